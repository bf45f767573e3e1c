-- What a working job has shown so far (e.g. how many partial images an image job has), as
-- JSON the job's tool defines; NULL until the first progress report.
ALTER TABLE jobs ADD COLUMN progress TEXT;
