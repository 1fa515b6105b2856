-- A MariaDB port of the Kinto storage model (see schema_postgres.sql).  Stamping stays in a trigger,
-- as in Kinto: NOW(3) is the statement's start time in ms (the closest freezable analogue of
-- clock_timestamp(); SYSDATE(3) would be the real wall clock but SET TIMESTAMP cannot freeze it).
-- Sessions run at READ COMMITTED, like Kinto on PostgreSQL, so each consistent read in the trigger
-- takes a fresh snapshot.
CREATE TABLE objects (
    id            VARCHAR(190) NOT NULL,
    parent_id     VARCHAR(190) NOT NULL,
    resource_name VARCHAR(64)  NOT NULL,
    last_modified BIGINT NOT NULL DEFAULT 0,
    data          TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (id, parent_id, resource_name),
    UNIQUE KEY objects_stamp (parent_id, resource_name, last_modified)
) ENGINE=InnoDB;

-- One row per key space, only for the 'locked' variant: locking it is the MariaDB equivalent of
-- pg_advisory_xact_lock (held until COMMIT/ROLLBACK).  GET_LOCK would not do: it survives COMMIT,
-- so it would have to be released by the application after the commit (bk-ci's bug, reversed).
CREATE TABLE objects_stamp_locks (
    parent_id     VARCHAR(190) NOT NULL,
    resource_name VARCHAR(64)  NOT NULL,
    PRIMARY KEY (parent_id, resource_name)
) ENGINE=InnoDB;

-- variant: plain
CREATE TRIGGER objects_bump BEFORE INSERT ON objects FOR EACH ROW
BEGIN
    DECLARE prev_stamp BIGINT DEFAULT NULL;
    DECLARE cur_stamp BIGINT;
    SELECT MAX(last_modified) INTO prev_stamp
      FROM objects
     WHERE parent_id = NEW.parent_id AND resource_name = NEW.resource_name;
    SET cur_stamp = CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED);
    IF prev_stamp IS NOT NULL AND prev_stamp >= cur_stamp THEN
        SET cur_stamp = prev_stamp + 1;
    END IF;
    SET NEW.last_modified = cur_stamp;
END;
