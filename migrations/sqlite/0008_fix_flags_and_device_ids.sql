-- Plausibility flags of a position (ingest::validate), and device ids in their canonical form
-- (identity.rs).

-- 1 when the fix time was further ahead of its receipt than `ingest.max_fix_ahead`.
ALTER TABLE positions ADD COLUMN clock_skew INTEGER NOT NULL DEFAULT 0;
-- Why the position cannot be believed, with the values as sent; NULL for a plausible one.
ALTER TABLE positions ADD COLUMN implausible TEXT;

-- A number typed with leading zeros (`0864...`, `013912345678`) names the same device as the
-- number without them, which is what trackers send. Rows whose canonical form is already
-- taken are left as they are (the API reports them on read) rather than merged silently.
UPDATE OR IGNORE devices
SET imei = ltrim(imei, '0')
WHERE imei GLOB '0*'
  AND imei NOT GLOB '*[^0-9]*'
  AND ltrim(imei, '0') <> '';
