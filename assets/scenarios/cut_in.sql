-- Cut-in: a vehicle close ahead is now in the ego's lane (within 2 m of its path) and has
-- itself moved sideways by more than 1.2 m in the last 3 s, travelling along the road (not
-- crossing it). Its own sideways motion is its motion in the ego frame plus the ego's own
-- (from ego_pose), so the ego changing lanes is not a cut-in, nor is a vehicle entering a
-- lane the ego is leaving or entering (the ego indicated within the last 2 s). Straight road
-- only: the ego's heading changed by less than 0.03 rad over the window. Severity grows as
-- the gap shrinks (1.0 at 8 m or less).
WITH signals AS (
    SELECT vehicle_id, drive_id, t FROM vehicle_state WHERE turn_signal <> 'off'
), w AS (
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
    SELECT w.*, e.x AS ex, e.y AS ey, e.heading AS eh,
           coalesce(s.t >= w.t - INTERVAL 2 SECONDS, false) AS signalled
    FROM w
    ASOF JOIN ego_pose e ON w.vehicle_id = e.vehicle_id AND w.drive_id = e.drive_id AND w.t >= e.t
    -- the last moment the indicator was on, if ever
    ASOF LEFT JOIN signals s
        ON w.vehicle_id = s.vehicle_id AND w.drive_id = s.drive_id AND w.t >= s.t
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
WHERE abs(y) < 2.0 AND x BETWEEN 0 AND 25 AND abs(own_shift) > 1.2 AND abs(turned) < 0.03
  AND NOT signalled
  AND abs(vy) < 2.0 + 0.2 * abs(vx)
