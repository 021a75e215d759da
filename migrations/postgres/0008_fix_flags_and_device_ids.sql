-- Plausibility flags of a position (ingest::validate), and device ids in their canonical form
-- (identity.rs). The same change as migrations/sqlite/0008.

-- True when the fix time was further ahead of its receipt than `ingest.max_fix_ahead`.
ALTER TABLE positions ADD COLUMN clock_skew boolean NOT NULL DEFAULT false;
-- Why the position cannot be believed, with the values as sent; NULL for a plausible one.
ALTER TABLE positions ADD COLUMN implausible text;

-- A number typed with leading zeros (`0864...`, `013912345678`) names the same device as the
-- number without them, which is what trackers send. A row whose canonical form is taken (or
-- shared with another row) is left as it is: such a binding never matched its device anyway,
-- and merging two bindings silently could move a wristband to another person. Positions keep
-- the id they were stored with; the audit record is not rewritten.
UPDATE devices
SET imei = ltrim(imei, '0')
WHERE imei ~ '^0[0-9]*$'
  AND ltrim(imei, '0') <> ''
  AND (SELECT count(*) FROM devices d WHERE ltrim(d.imei, '0') = ltrim(devices.imei, '0')) = 1;
