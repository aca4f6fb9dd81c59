-- Cut-in: a vehicle that was in an adjacent lane within the last 3 s is now in the ego's
-- lane, close ahead. Severity grows as the gap shrinks (1.0 at 8 m or less).
WITH w AS (
    SELECT vehicle_id, drive_id, track_id, t, x, y,
           max(abs(y)) OVER (
               PARTITION BY vehicle_id, drive_id, track_id ORDER BY t
               RANGE BETWEEN INTERVAL 3 SECONDS PRECEDING AND CURRENT ROW
           ) AS widest
    FROM tracks
    WHERE object_class IN ('car', 'truck')
)
SELECT vehicle_id, drive_id,
       t - INTERVAL 3 SECONDS AS start_t,
       t + INTERVAL 3 SECONDS AS end_t,
       least(1.0, 8.0 / greatest(x, 1.0)) AS severity,
       ['gap_' || CAST(round(x) AS INTEGER) || 'm'] AS tags
FROM w
WHERE abs(y) < 1.0 AND widest > 2.8 AND x BETWEEN 0 AND 25
