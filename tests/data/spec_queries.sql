-- The SQL queries of the user's guide (seed-batch-experiments-and-metrics.md) that
-- tests/test_query_spec.py runs through `alems query`. Each block is copied verbatim
-- from the guide ("Statistical Analysis", "Sample Queries", "Batch Monitoring",
-- "Resuming"); `watch` is the SQL that the guide's `watch -n 5 "sqlite3 …"` line hands
-- to sqlite3 once the shell has removed its quoting (\" -> "). A block starts at its
-- `-- query: NAME` line and ends before the next one (blank lines around it dropped).

-- query: summary_by_task
SELECT
e.task_name,
e.provider,
COUNT(*) as runs,
AVG(r.dynamic_energy_uj/1e6) as mean_energy_j,
STDDEV(r.dynamic_energy_uj/1e6) as std_energy_j,
AVG(r.duration_ns/1e9) as mean_duration_s,
AVG(ots.tax_percent) as mean_tax_pct
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
JOIN orchestration_tax_summary ots ON r.run_id = ots.linear_run_id
WHERE e.group_id = 'your-session-id'
GROUP BY e.task_name, e.provider, r.workflow_type;

-- query: confidence
WITH stats AS (
SELECT
task_name,
provider,
workflow_type,
AVG(dynamic_energy_uj/1e6) as mean,
STDDEV(dynamic_energy_uj/1e6) as std,
COUNT(*) as n
FROM runs r
JOIN experiments e ON r.exp_id = e.exp_id
WHERE e.group_id = 'your-session-id'
GROUP BY task_name, provider, workflow_type
)
SELECT
task_name,
provider,
workflow_type,
ROUND(mean, 3) as mean_j,
ROUND(mean - 1.96 * std/SQRT(n), 3) as ci_lower,
ROUND(mean + 1.96 * std/SQRT(n), 3) as ci_upper
FROM stats;

-- query: all_metrics
SELECT * FROM runs WHERE run_id = 977;

-- query: linear_vs_agentic
SELECT
r.workflow_type,
AVG(r.dynamic_energy_uj/1e6) as avg_energy_j,
AVG(r.duration_ns/1e9) as avg_duration_s,
AVG(r.ipc) as avg_ipc
FROM runs r
WHERE r.exp_id = 185
GROUP BY r.workflow_type;

-- query: high_tax
SELECT
e.exp_id,
e.task_name,
ots.tax_percent
FROM orchestration_tax_summary ots
JOIN runs r ON ots.linear_run_id = r.run_id
JOIN experiments e ON r.exp_id = e.exp_id
WHERE ots.tax_percent > 200
ORDER BY ots.tax_percent DESC;

-- query: watch
SELECT COUNT(*) as total_runs, SUM(CASE WHEN workflow_type="linear" THEN 1 ELSE 0 END) as linear, SUM(CASE WHEN workflow_type="agentic" THEN 1 ELSE 0 END) as agentic FROM runs;

-- query: remaining
SELECT
AVG(duration_ns/1e9) as avg_duration_s,
COUNT(*) as completed
FROM runs
WHERE exp_id = (SELECT MAX(exp_id) FROM experiments);

-- query: resuming
SELECT MAX(run_number) FROM runs
WHERE exp_id = (SELECT MAX(exp_id) FROM experiments)
AND workflow_type = 'agentic';
