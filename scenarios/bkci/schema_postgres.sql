-- The bk-ci routing-rule model on PostgreSQL: a UNIQUE constraint treats NULLs as distinct by
-- default (PostgreSQL 15 could say NULLS NOT DISTINCT; the model keeps the default, like MySQL).
CREATE TABLE sharding_routing_rule (
    id           BIGSERIAL PRIMARY KEY,
    cluster_name VARCHAR(64)  NOT NULL,
    module_code  VARCHAR(64)  NOT NULL,
    type         VARCHAR(32)  NOT NULL,
    routing_name VARCHAR(128) NOT NULL,
    routing_rule VARCHAR(255) NOT NULL,
    data_tag     VARCHAR(64)  NULL,
    CONSTRAINT uni_rule UNIQUE (cluster_name, module_code, type, routing_name, data_tag)
);
