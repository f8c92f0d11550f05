-- Instance quotas (instances, vcpus, memory_mib) are held by the instances that
-- hold a host: pending, running, stopping and shutting down. Stopped and failed
-- instances held them too before; count again what each account holds.

UPDATE account_usage SET used = (
    SELECT COUNT(*) FROM instances i
    WHERE i.account_id = account_usage.account_id AND i.host_id IS NOT NULL
) WHERE resource = 'instances';

UPDATE account_usage SET used = (
    SELECT COALESCE(SUM(i.vcpus), 0) FROM instances i
    WHERE i.account_id = account_usage.account_id AND i.host_id IS NOT NULL
) WHERE resource = 'vcpus';

UPDATE account_usage SET used = (
    SELECT COALESCE(SUM(i.memory_mib), 0) FROM instances i
    WHERE i.account_id = account_usage.account_id AND i.host_id IS NOT NULL
) WHERE resource = 'memory_mib';
