-- What a job produces (`image` or `json`), as its tool declared when the job was created, so
-- the views read the job instead of knowing which tools make images. Rows from before this
-- column are backfilled from their tool name: the two image tools then were generate_image
-- and edit_image.
ALTER TABLE jobs ADD COLUMN produces TEXT;
UPDATE jobs SET produces = CASE WHEN tool IN ('generate_image', 'edit_image') THEN 'image' ELSE 'json' END;

-- A writer that does not name the column (a binary from before it) gets the same backfill.
CREATE TRIGGER jobs_produces_of_tool AFTER INSERT ON jobs WHEN NEW.produces IS NULL
BEGIN
    UPDATE jobs
    SET produces = CASE WHEN NEW.tool IN ('generate_image', 'edit_image') THEN 'image' ELSE 'json' END
    WHERE id = NEW.id;
END;
