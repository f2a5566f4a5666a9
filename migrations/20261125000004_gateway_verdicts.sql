-- The troubleshooter's last verdict per gateway (GW-1) is not configuration:
-- it bumps no generation. This sequence lets every node's cached gateway
-- list notice a new verdict written by any node.
ALTER TABLE gateways ADD COLUMN verdict_seq INTEGER NOT NULL DEFAULT 0;
