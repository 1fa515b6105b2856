-- variant: locked -- applied on top of schema_mysql.sql: lock the key space's row (held until
-- COMMIT/ROLLBACK, like pg_advisory_xact_lock), then read the newest stamp with a fresh snapshot.
DROP TRIGGER objects_bump;
CREATE TRIGGER objects_bump BEFORE INSERT ON objects FOR EACH ROW
BEGIN
    DECLARE prev_stamp BIGINT DEFAULT NULL;
    DECLARE cur_stamp BIGINT;
    INSERT INTO objects_stamp_locks (parent_id, resource_name) VALUES (NEW.parent_id, NEW.resource_name)
        ON DUPLICATE KEY UPDATE resource_name = VALUES(resource_name);
    SELECT MAX(last_modified) INTO prev_stamp
      FROM objects
     WHERE parent_id = NEW.parent_id AND resource_name = NEW.resource_name;
    SET cur_stamp = CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED);
    IF prev_stamp IS NOT NULL AND prev_stamp >= cur_stamp THEN
        SET cur_stamp = prev_stamp + 1;
    END IF;
    SET NEW.last_modified = cur_stamp;
END;
