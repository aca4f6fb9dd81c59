-- Weather and night: every drive in a condition other than clear day is one clip, tagged
-- with its condition. Severity ranks how hard the condition is for perception.
SELECT vehicle_id, drive_id, start_t, end_t,
       CASE conditions
           WHEN 'flooded' THEN 1.0 WHEN 'snow' THEN 0.8 WHEN 'fog' THEN 0.7
           WHEN 'rain' THEN 0.6 WHEN 'night' THEN 0.5 ELSE 0.3
       END AS severity,
       [conditions] AS tags
FROM drives
WHERE conditions <> 'day'
