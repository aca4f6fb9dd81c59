-- Stalled vehicle: a vehicle ahead, in or next to the ego's lane, that has not moved for
-- 2 s (perceived speed under 1.5 m/s throughout) while the ego is still moving (a queue at a
-- junction stops the ego too).
WITH ego AS (
    SELECT vehicle_id, drive_id, t, speed_mps
    FROM vehicle_state
    WHERE isfinite(speed_mps)
), w AS (
    SELECT vehicle_id, drive_id, track_id, t, x, y,
           max(sqrt(vx * vx + vy * vy)) OVER past AS speed,
           count(*) OVER past AS n
    FROM tracks
    WHERE object_class IN ('car', 'truck')
    WINDOW past AS (
        PARTITION BY vehicle_id, drive_id, track_id ORDER BY t
        RANGE BETWEEN INTERVAL 2 SECONDS PRECEDING AND CURRENT ROW
    )
)
SELECT w.vehicle_id, w.drive_id,
       w.t - INTERVAL 3 SECONDS AS start_t,
       w.t + INTERVAL 3 SECONDS AS end_t,
       least(1.0, 30.0 / greatest(w.x, 1.0)) AS severity,
       [CASE WHEN abs(w.y) < 1.6 THEN 'own_lane' ELSE 'adjacent_lane' END] AS tags
FROM w
ASOF JOIN ego e ON w.vehicle_id = e.vehicle_id AND w.drive_id = e.drive_id AND w.t >= e.t
WHERE w.speed < 1.5 AND w.n >= 10 AND abs(w.y) < 5.5 AND w.x BETWEEN 0 AND 100
  AND e.speed_mps > 2.0
