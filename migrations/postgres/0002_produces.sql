-- What a job produces (`image` or `json`), as its tool declared when the job was created, so
-- the views read the job instead of knowing which tools make images. Rows from before this
-- column are backfilled from their tool name: the two image tools then were generate_image
-- and edit_image.
ALTER TABLE jobs ADD COLUMN produces TEXT;
UPDATE jobs SET produces = CASE WHEN tool IN ('generate_image', 'edit_image') THEN 'image' ELSE 'json' END;
ALTER TABLE jobs ALTER COLUMN produces SET NOT NULL;

-- Instances share the database, so during a rolling upgrade an instance from before this
-- column still inserts jobs without it; they get the same backfill.
CREATE FUNCTION jobs_produces_of_tool() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.produces IS NULL THEN
        NEW.produces := CASE WHEN NEW.tool IN ('generate_image', 'edit_image') THEN 'image' ELSE 'json' END;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER jobs_produces_of_tool BEFORE INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_produces_of_tool();
