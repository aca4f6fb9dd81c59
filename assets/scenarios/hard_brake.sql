-- Lead vehicle braking hard: the vehicle ahead in the ego's path (not one crossing it)
-- decelerates at more than 5 m/s^2. The query reads the slope of its speed over the last
-- second, which is below the peak: it asks for 4.5 m/s^2.
-- Severity: deceleration / 9 m/s^2.
WITH w AS (
    SELECT vehicle_id, drive_id, track_id, t, x, y, vy,
           regr_slope(vx, epoch(t)) OVER past AS ax,
           count(*) OVER past AS n
    FROM tracks
    WHERE object_class IN ('car', 'truck')
    WINDOW past AS (
        PARTITION BY vehicle_id, drive_id, track_id ORDER BY t
        RANGE BETWEEN INTERVAL 1 SECOND PRECEDING AND CURRENT ROW
    )
)
SELECT vehicle_id, drive_id,
       t - INTERVAL 3 SECONDS AS start_t,
       t + INTERVAL 3 SECONDS AS end_t,
       least(1.0, -ax / 9.0) AS severity,
       ['decel_' || CAST(round(-ax) AS INTEGER) || 'mps2'] AS tags
FROM w
WHERE ax < -4.5 AND n >= 6 AND abs(y) < 1.6 AND abs(vy) < 3.0 AND x BETWEEN 0 AND 60
