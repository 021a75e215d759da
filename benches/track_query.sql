-- The track query on a large positions table (benches/README.md, "The track query on
-- 10 million rows"). Run against a database that `ewall migrate` has brought up to date:
--
--   createdb -h 127.0.0.1 -U postgres ewall_track
--   EWALL_STORE__URL=postgres://postgres@127.0.0.1:5432/ewall_track ewall migrate
--   psql -h 127.0.0.1 -U postgres -d ewall_track -v fill=1 -v days=10 -v persons=7000 -f benches/track_query.sql
--
-- With `fill` set, it fills `days` daily partitions from 2026-10-01 with `persons` people
-- reporting every 10 minutes (144 fixes a person-day), written in arrival order (every
-- person's fix of one instant, then the next instant), as the store writer's batches write
-- them, so a person's fixes of a day are spread over the day's pages as in service. Without
-- it, only the queries run, on what an earlier run filled. The queries time the store's own
-- track query for one person-day as a prepared statement: one person twice (first read, then
-- warm), then twenty others once each.

\set ON_ERROR_STOP on
\timing on

\if :{?fill}
SELECT ewall_ensure_position_partitions(DATE '2026-10-01', DATE '2026-10-01' + (:days - 1));

-- One INSERT per day, so each commit stays a day's worth (about a million rows).
SELECT format(
    'INSERT INTO positions (device_id, person_id, time, received_at, lat, lon, valid, accuracy_m, '
    'source, archived, integrity_mismatch, protocol) '
    'SELECT ''bench'' || p, md5(''person'' || p)::uuid, t, t + interval ''2 seconds'', '
    '25.5 + (p %% 1000) * 1e-4 + random() * 1e-4, 112.3 + (p / 1000) * 1e-3 + random() * 1e-4, '
    'true, 10, ''gps'', false, false, ''gt06'' '
    'FROM generate_series(timestamptz %L, timestamptz %L - interval ''10 minutes'', interval ''10 minutes'') AS t, '
    'generate_series(1, %s) AS p ORDER BY t, p',
    d, d + interval '1 day', :persons)
FROM generate_series(timestamptz '2026-10-01 00:00:00+00', timestamptz '2026-10-01 00:00:00+00' + (:days - 1) * interval '1 day', interval '1 day') AS d
\gexec

VACUUM ANALYZE positions;
\endif

SELECT count(*) AS rows, pg_size_pretty(pg_total_relation_size('positions_20261005')) AS one_day_with_indexes
FROM positions;

-- The store's query (PgStore::track), as a prepared statement: one person, one day.
PREPARE track(uuid, timestamptz, timestamptz, bigint) AS
    SELECT * FROM positions WHERE person_id = $1 AND time >= $2 AND time <= $3
    ORDER BY time, id LIMIT $4;

-- Cold for this person (no page of theirs read yet), then warm.
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
    EXECUTE track(md5('person' || 4321)::uuid, '2026-10-05 00:00:00+00', '2026-10-06 00:00:00+00', 10000);
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
    EXECUTE track(md5('person' || 4321)::uuid, '2026-10-05 00:00:00+00', '2026-10-06 00:00:00+00', 10000);

-- Twenty other persons, each once (their pages not yet read): the "Execution Time" lines.
SELECT format('EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) EXECUTE track(md5(%L)::uuid, '
              '''2026-10-05 00:00:00+00'', ''2026-10-06 00:00:00+00'', 10000)', 'person' || p)
FROM generate_series(100, 6900, 350) AS p
\gexec
