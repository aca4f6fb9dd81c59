-- Pedestrian crossing: a pedestrian on the road ahead (within 6 m of the ego's path, up to
-- 60 m out). Severity grows as the distance shrinks (1.0 at 15 m or less).
SELECT vehicle_id, drive_id,
       t - INTERVAL 2 SECONDS AS start_t,
       t + INTERVAL 2 SECONDS AS end_t,
       least(1.0, 15.0 / greatest(x, 1.0)) AS severity,
       ['pedestrian'] AS tags
FROM tracks
WHERE object_class = 'pedestrian' AND x BETWEEN 0 AND 60 AND abs(y) < 6.0
