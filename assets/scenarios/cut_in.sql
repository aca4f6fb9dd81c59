-- Cut-in: a vehicle close ahead is now in the ego's lane and has itself moved across by more
-- than half a lane in the last 3 s, travelling along the road (not crossing it). Its own
-- sideways motion is its motion in the ego frame plus the ego's own (from ego_pose), so the
-- ego changing lanes is not a cut-in. Straight road only: the ego's heading changed by less
-- than 0.05 rad over the window. Severity grows as the gap shrinks (1.0 at 8 m or less).
WITH w AS (
    SELECT vehicle_id, drive_id, track_id, t, x, y, vx, vy,
           first_value(y) OVER past AS y_then,
           first_value(t) OVER past AS t_then
    FROM tracks
    WHERE object_class IN ('car', 'truck')
    WINDOW past AS (
        PARTITION BY vehicle_id, drive_id, track_id ORDER BY t
        RANGE BETWEEN INTERVAL 3 SECONDS PRECEDING AND CURRENT ROW
    )
), now AS (
    SELECT w.*, e.x AS ex, e.y AS ey, e.heading AS eh, e.turn_signal
    FROM w
    ASOF JOIN ego_pose e ON w.vehicle_id = e.vehicle_id AND w.drive_id = e.drive_id AND w.t >= e.t
), moved AS (
    SELECT n.*, n.eh - e.heading AS turned,
           n.y - n.y_then + cos(n.eh) * (n.ey - e.y) - sin(n.eh) * (n.ex - e.x) AS own_shift
    FROM now n
    ASOF JOIN ego_pose e
        ON n.vehicle_id = e.vehicle_id AND n.drive_id = e.drive_id AND n.t_then >= e.t
)
SELECT vehicle_id, drive_id,
       t - INTERVAL 3 SECONDS AS start_t,
       t + INTERVAL 3 SECONDS AS end_t,
       least(1.0, 8.0 / greatest(x, 1.0)) AS severity,
       [CASE WHEN own_shift > 0 THEN 'from_right' ELSE 'from_left' END] AS tags
FROM moved
WHERE abs(y) < 1.8 AND x BETWEEN 0 AND 25 AND abs(own_shift) > 1.5 AND abs(turned) < 0.03
  AND turn_signal = 'off'
  AND abs(vy) < 2.0 + 0.2 * abs(vx)
