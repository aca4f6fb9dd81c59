-- Near miss: time to collision with anything in the ego's corridor ahead below 2 s (the
-- ego's front bumper is 2.5 m ahead of its centre). Severity: 1 - TTC / 2 s.
WITH ego AS (
    SELECT vehicle_id, drive_id, t, speed_mps
    FROM vehicle_state
    WHERE isfinite(speed_mps)
), ttc AS (
    SELECT o.vehicle_id, o.drive_id, o.t,
           (o.x - o.length / 2 - 2.5) / (e.speed_mps - o.vx) AS ttc
    FROM tracks o
    ASOF JOIN ego e
        ON o.vehicle_id = e.vehicle_id AND o.drive_id = e.drive_id AND o.t >= e.t
    WHERE o.x - o.length / 2 - 2.5 > 0
      AND abs(o.y) < (2.0 + o.width) / 2 + 0.3
      AND e.speed_mps - o.vx > 0.1
)
SELECT vehicle_id, drive_id,
       t - INTERVAL 3 SECONDS AS start_t,
       t + INTERVAL 2 SECONDS AS end_t,
       1.0 - ttc / 2.0 AS severity,
       ['ttc_' || CAST(round(ttc, 1) AS VARCHAR) || 's'] AS tags
FROM ttc
WHERE ttc < 2.0
