-- variant: locked -- applied on top of schema_postgres.sql: the trigger of Kinto PR #3790
CREATE OR REPLACE TRIGGER objects_bump BEFORE INSERT ON objects
    FOR EACH ROW EXECUTE FUNCTION bump_timestamp_locked();
