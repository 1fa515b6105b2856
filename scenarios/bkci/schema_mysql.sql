-- A minimal model of bk-ci's sharding routing rules (MySQL).  The unique key includes the nullable
-- data_tag, and InnoDB treats NULLs as distinct, so it does not stop duplicates of untagged rules.
CREATE TABLE sharding_routing_rule (
    id           BIGINT AUTO_INCREMENT PRIMARY KEY,
    cluster_name VARCHAR(64)  NOT NULL,
    module_code  VARCHAR(64)  NOT NULL,
    type         VARCHAR(32)  NOT NULL,
    routing_name VARCHAR(128) NOT NULL,
    routing_rule VARCHAR(255) NOT NULL,
    data_tag     VARCHAR(64)  NULL,
    UNIQUE KEY uni_rule (cluster_name, module_code, type, routing_name, data_tag)
) ENGINE=InnoDB;
