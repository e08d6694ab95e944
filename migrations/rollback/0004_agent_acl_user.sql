ALTER TABLE agents DROP COLUMN acl_user;
