-- Lane change: the driver indicates and moves to the next lane. A clip from 1 s before the
-- indicator goes on to 5 s after.
WITH s AS (
    SELECT vehicle_id, drive_id, t, turn_signal,
           lag(turn_signal) OVER (PARTITION BY vehicle_id, drive_id ORDER BY t) AS before
    FROM vehicle_state
)
SELECT vehicle_id, drive_id,
       t - INTERVAL 1 SECOND AS start_t,
       t + INTERVAL 5 SECONDS AS end_t,
       0.3 AS severity,
       [turn_signal] AS tags
FROM s
WHERE turn_signal IN ('left', 'right') AND before IS DISTINCT FROM turn_signal
