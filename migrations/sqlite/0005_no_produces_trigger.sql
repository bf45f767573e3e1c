-- The trigger of 0004 filled `produces` for rows a binary from before the column inserts. On
-- SQLite no such binary can write: only one process opens the database, and a binary from
-- before 0004 refuses to start on a database that has it (an applied migration it does not
-- know). The trigger only cost every insert a statement journal, so it goes. (PostgreSQL
-- keeps its own: there instances of both versions share the database during an upgrade.)
DROP TRIGGER IF EXISTS jobs_produces_of_tool;
