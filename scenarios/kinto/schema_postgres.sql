-- A minimal model of Kinto's PostgreSQL storage (kinto/core/storage/postgresql/schema.sql):
-- buckets, collections, records and history entries share one table; last_modified is epoch
-- milliseconds and unique per (parent_id, resource_name).
CREATE TABLE objects (
    id            TEXT NOT NULL,
    parent_id     TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    last_modified BIGINT NOT NULL,
    data          TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, parent_id, resource_name),
    UNIQUE (parent_id, resource_name, last_modified)
);

-- The stamping trigger: the newest visible stamp of the key space (a plain MVCC read, no lock), the
-- wall clock in ms, and +1 ms if the clock did not move past it.  clock_timestamp() is unqualified,
-- as upstream: a harness clock shadowing it (search_path) controls what the trigger reads.
CREATE FUNCTION bump_timestamp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous BIGINT;
    current  BIGINT;
BEGIN
    SELECT last_modified INTO previous
      FROM objects
     WHERE parent_id = NEW.parent_id AND resource_name = NEW.resource_name
     ORDER BY last_modified DESC
     LIMIT 1;
    current := floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
    IF previous IS NOT NULL AND previous >= current THEN
        current := previous + 1;
    END IF;
    NEW.last_modified := current;
    RETURN NEW;
END $$;

-- The upstream fix (Kinto PR #3790): serialize writers of one key space until commit first; in READ
-- COMMITTED the trigger's SELECT then takes a fresh snapshot and sees the committed stamp.
CREATE FUNCTION bump_timestamp_locked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous BIGINT;
    current  BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(NEW.parent_id), hashtext(NEW.resource_name));
    SELECT last_modified INTO previous
      FROM objects
     WHERE parent_id = NEW.parent_id AND resource_name = NEW.resource_name
     ORDER BY last_modified DESC
     LIMIT 1;
    current := floor(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT;
    IF previous IS NOT NULL AND previous >= current THEN
        current := previous + 1;
    END IF;
    NEW.last_modified := current;
    RETURN NEW;
END $$;

-- variant: plain (storage.install_schema swaps in bump_timestamp_locked for variant="locked")
CREATE TRIGGER objects_bump BEFORE INSERT ON objects
    FOR EACH ROW EXECUTE FUNCTION bump_timestamp();
