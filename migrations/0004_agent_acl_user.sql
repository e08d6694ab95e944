-- The Redis ACL user of a run, so whoever records a run lost can remove its user.
ALTER TABLE agents ADD COLUMN acl_user TEXT;
