"""The crash query in DuckDB over a file of JSON lines, timed per thread count.

Batch semantics, as the issue states them: no watermark, so late events are counted;
malformed lines are skipped. Prints one line per thread count: seconds and the number of
(window, user) rows with count > 2.

Usage: duckdb_crash.py FILE THREADS...
"""

import sys
import time

import duckdb

QUERY = """
SELECT time_bucket(INTERVAL 10 SECOND, CAST(timestamp AS TIMESTAMP)) AS window_start,
       user_id, count(*) AS crash_count
FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true,
               columns = {{timestamp: 'VARCHAR', severity: 'VARCHAR', user_id: 'VARCHAR',
                          content: 'VARCHAR'}})
WHERE severity IN ('High', 'Critical') AND lower(content) LIKE '%crash%'
  AND TRY_CAST(timestamp AS TIMESTAMP) IS NOT NULL
GROUP BY ALL
HAVING count(*) > 2
"""

path, threads = sys.argv[1], [int(t) for t in sys.argv[2:]]
for n in threads:
    con = duckdb.connect()
    con.execute(f"SET threads = {n}")
    started = time.perf_counter()
    rows = con.execute(QUERY.format(path=path)).fetchall()
    secs = time.perf_counter() - started
    print(f"duckdb threads {n}: {secs:.2f} s, {len(rows)} rows")
