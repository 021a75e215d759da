-- Whom a zone applies to besides its per-person assignments: 'persons' (only those),
-- 'everyone', or 'level:<strict|normal|lenient>' (a shared zone, found through the shared
-- zones' R-tree per fix).
ALTER TABLE zones ADD COLUMN scope text NOT NULL DEFAULT 'persons';
-- When the zone is in force (properties.schedule, JSON), or NULL for always.
ALTER TABLE zones ADD COLUMN schedule text;
