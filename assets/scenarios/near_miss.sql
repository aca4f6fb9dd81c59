-- Near miss: time to collision with anything in the ego's corridor ahead below 2 s (the
-- ego's front bumper is 2.5 m ahead of its centre). Perceived positions and speeds are
-- noisy: the query asks for TTC below 2.2 s throughout 0.2 s, in a corridor 0.15 m wider
-- than the definition's. Severity: 1 - TTC / 2 s.
WITH ego AS (
    SELECT vehicle_id, drive_id, t, speed_mps
    FROM vehicle_state
    WHERE isfinite(speed_mps)
), ttc AS (
    SELECT o.vehicle_id, o.drive_id, o.track_id, o.t,
           (o.x - o.length / 2 - 2.5) / (e.speed_mps - o.vx) AS ttc
    FROM tracks o
    ASOF JOIN ego e
        ON o.vehicle_id = e.vehicle_id AND o.drive_id = e.drive_id AND o.t >= e.t
    WHERE o.x - o.length / 2 - 2.5 > 0
      AND abs(o.y) < (2.0 + o.width) / 2 + 0.45
      AND e.speed_mps - o.vx > 0.1
), sustained AS (
    SELECT *,
           max(ttc) OVER (
               PARTITION BY vehicle_id, drive_id, track_id ORDER BY t
               RANGE BETWEEN INTERVAL 200 MILLISECONDS PRECEDING AND CURRENT ROW
           ) AS worst
    FROM ttc
)
SELECT vehicle_id, drive_id,
       t - INTERVAL 3 SECONDS AS start_t,
       t + INTERVAL 2 SECONDS AS end_t,
       least(1.0, greatest(0.0, 1.0 - ttc / 2.0)) AS severity,
       ['ttc_' || CAST(round(ttc, 1) AS VARCHAR) || 's'] AS tags
FROM sustained
WHERE worst < 2.2
