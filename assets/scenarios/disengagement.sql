-- Disengagement: the safety driver took over. The clip starts 5 s before, to show why.
SELECT vehicle_id, drive_id,
       t - INTERVAL 5 SECONDS AS start_t,
       t + INTERVAL 3 SECONDS AS end_t,
       1.0 AS severity,
       [split_part(detail, ' ', 1)] AS tags
FROM events
WHERE type = 'disengagement'
