-- The VXLAN id that carries each network between hosts, unique in the region.

ALTER TABLE networks ADD COLUMN vni BIGINT;
UPDATE networks SET vni = (SELECT COUNT(*) FROM networks n2 WHERE n2.id <= networks.id);
CREATE UNIQUE INDEX networks_vni ON networks (vni);
