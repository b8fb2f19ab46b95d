package redis

import "github.com/redwire/redwire/sample"

// infoMetric is what redis_exporter makes of one INFO field.
type infoMetric struct {
	name string
	typ  sample.Type
	help string
}

// infoMetrics maps INFO fields to redis_exporter's metric names and types
// (its metricMapGauges and metricMapCounters, exporter/exporter.go). Its
// types are kept even where they look wrong (sync_full is a gauge,
// total_error_replies a counter without _total) so that queries carry over.
// total_system_memory is exported as redis_exporter does with
// --include-system-metrics. Tile38's and RediSearch's fields are left out:
// Tile38 is not scraped through INFO here, and module fields only come with
// INFO EVERYTHING, while the target asks for INFO ALL.
var infoMetrics = map[string]infoMetric{
	// Sentinel (INFO sentinel on a sentinel target)
	"sentinel_masters":                {"redis_sentinel_masters", sample.Gauge, "Masters this sentinel monitors."},
	"sentinel_tilt":                   {"redis_sentinel_tilt", sample.Gauge, "Whether the sentinel is in TILT mode."},
	"sentinel_running_scripts":        {"redis_sentinel_running_scripts", sample.Gauge, "Scripts the sentinel is running."},
	"sentinel_scripts_queue_length":   {"redis_sentinel_scripts_queue_length", sample.Gauge, "Scripts queued for execution."},
	"sentinel_simulate_failure_flags": {"redis_sentinel_simulate_failure_flags", sample.Gauge, "Failure-simulation flags set on the sentinel."},
	// Server
	"uptime_in_seconds": {"redis_uptime_in_seconds", sample.Gauge, "Seconds since the server started."},
	"process_id":        {"redis_process_id", sample.Gauge, "Process id of the server."},
	"io_threads_active": {"redis_io_threads_active", sample.Gauge, "Whether I/O threads are active."},

	// Clients
	"connected_clients":               {"redis_connected_clients", sample.Gauge, "Client connections, replicas excluded."},
	"blocked_clients":                 {"redis_blocked_clients", sample.Gauge, "Clients waiting on a blocking command."},
	"maxclients":                      {"redis_max_clients", sample.Gauge, "The maxclients setting."},
	"tracking_clients":                {"redis_tracking_clients", sample.Gauge, "Clients with client-side caching tracking on."},
	"clients_in_timeout_table":        {"redis_clients_in_timeout_table", sample.Gauge, "Blocked clients with a timeout."},
	"pubsub_clients":                  {"redis_pubsub_clients", sample.Gauge, "Clients in pub/sub mode."},
	"watching_clients":                {"redis_watching_clients", sample.Gauge, "Clients with WATCHed keys."},
	"total_watched_keys":              {"redis_total_watched_keys", sample.Gauge, "Keys being WATCHed."},
	"total_blocking_keys":             {"redis_total_blocking_keys", sample.Gauge, "Keys clients are blocked on."},
	"total_blocking_keys_on_nokey":    {"redis_total_blocking_keys_on_nokey", sample.Gauge, "Keys clients are blocked on until deleted."},
	"client_longest_output_list":      {"redis_client_longest_output_list", sample.Gauge, "Longest client output list (Redis < 5)."},
	"client_biggest_input_buf":        {"redis_client_biggest_input_buf", sample.Gauge, "Biggest client input buffer (Redis < 5)."},
	"client_recent_max_output_buffer": {"redis_client_recent_max_output_buffer_bytes", sample.Gauge, "Biggest recent client output buffer, in bytes."},
	"client_recent_max_input_buffer":  {"redis_client_recent_max_input_buffer_bytes", sample.Gauge, "Biggest recent client input buffer, in bytes."},

	// Memory
	"used_memory":              {"redis_memory_used_bytes", sample.Gauge, "Bytes allocated by Redis."},
	"used_memory_rss":          {"redis_memory_used_rss_bytes", sample.Gauge, "Resident set size of the process, in bytes."},
	"used_memory_peak":         {"redis_memory_used_peak_bytes", sample.Gauge, "Peak of used_memory, in bytes."},
	"used_memory_lua":          {"redis_memory_used_lua_bytes", sample.Gauge, "Bytes used by the Lua engine."},
	"used_memory_vm_eval":      {"redis_memory_used_vm_eval_bytes", sample.Gauge, "Bytes used by the EVAL script engine."},
	"used_memory_scripts_eval": {"redis_memory_used_scripts_eval_bytes", sample.Gauge, "Bytes of overhead of EVAL scripts."},
	"used_memory_overhead":     {"redis_memory_used_overhead_bytes", sample.Gauge, "Bytes used for internal structures."},
	"used_memory_startup":      {"redis_memory_used_startup_bytes", sample.Gauge, "Bytes used at startup."},
	"used_memory_dataset":      {"redis_memory_used_dataset_bytes", sample.Gauge, "Bytes used by the dataset."},
	"number_of_cached_scripts": {"redis_number_of_cached_scripts", sample.Gauge, "EVAL scripts cached."},
	"number_of_functions":      {"redis_number_of_functions", sample.Gauge, "Functions loaded."},
	"number_of_libraries":      {"redis_number_of_libraries", sample.Gauge, "Function libraries loaded."},
	"used_memory_vm_functions": {"redis_memory_used_vm_functions_bytes", sample.Gauge, "Bytes used by the functions engine."},
	"used_memory_scripts":      {"redis_memory_used_scripts_bytes", sample.Gauge, "Bytes of overhead of scripts and functions."},
	"used_memory_functions":    {"redis_memory_used_functions_bytes", sample.Gauge, "Bytes of overhead of functions."},
	"used_memory_vm_total":     {"redis_memory_used_vm_total", sample.Gauge, "Bytes used by all script engines."},
	"maxmemory":                {"redis_memory_max_bytes", sample.Gauge, "The maxmemory setting, in bytes (0: none)."},
	"total_system_memory":      {"redis_total_system_memory_bytes", sample.Gauge, "Memory of the host, in bytes."},

	"maxmemory_reservation":                      {"redis_memory_max_reservation_bytes", sample.Gauge, "Azure Cache maxmemory reservation, in bytes."},
	"maxmemory_desired_reservation":              {"redis_memory_max_reservation_desired_bytes", sample.Gauge, "Azure Cache desired maxmemory reservation, in bytes."},
	"maxfragmentationmemory_reservation":         {"redis_memory_max_fragmentation_reservation_bytes", sample.Gauge, "Azure Cache fragmentation reservation, in bytes."},
	"maxfragmentationmemory_desired_reservation": {"redis_memory_max_fragmentation_reservation_desired_bytes", sample.Gauge, "Azure Cache desired fragmentation reservation, in bytes."},

	"allocator_active":                    {"redis_allocator_active_bytes", sample.Gauge, "Bytes in the allocator's active pages."},
	"allocator_allocated":                 {"redis_allocator_allocated_bytes", sample.Gauge, "Bytes allocated from the allocator."},
	"allocator_resident":                  {"redis_allocator_resident_bytes", sample.Gauge, "Bytes resident in the allocator."},
	"allocator_frag_ratio":                {"redis_allocator_frag_ratio", sample.Gauge, "allocator_active / allocator_allocated."},
	"allocator_frag_bytes":                {"redis_allocator_frag_bytes", sample.Gauge, "allocator_active - allocator_allocated, in bytes."},
	"allocator_rss_ratio":                 {"redis_allocator_rss_ratio", sample.Gauge, "allocator_resident / allocator_active."},
	"allocator_rss_bytes":                 {"redis_allocator_rss_bytes", sample.Gauge, "allocator_resident - allocator_active, in bytes."},
	"mem_fragmentation_ratio":             {"redis_mem_fragmentation_ratio", sample.Gauge, "used_memory_rss / used_memory."},
	"mem_fragmentation_bytes":             {"redis_mem_fragmentation_bytes", sample.Gauge, "used_memory_rss - used_memory, in bytes."},
	"mem_clients_slaves":                  {"redis_mem_clients_slaves", sample.Gauge, "Bytes used by replica clients."},
	"mem_clients_normal":                  {"redis_mem_clients_normal", sample.Gauge, "Bytes used by normal clients."},
	"mem_not_counted_for_evict":           {"redis_mem_not_counted_for_eviction_bytes", sample.Gauge, "Bytes not counted for eviction (replica and AOF buffers)."},
	"mem_total_replication_buffers":       {"redis_mem_total_replication_buffers_bytes", sample.Gauge, "Bytes of replication buffers."},
	"mem_overhead_db_hashtable_rehashing": {"redis_mem_overhead_db_hashtable_rehashing_bytes", sample.Gauge, "Bytes of temporary rehashing overhead."},
	"mem_replicas_repl_buffer":            {"redis_mem_replicas_repl_buffer_bytes", sample.Gauge, "Bytes of replica replication buffers (Valkey)."},
	"lazyfree_pending_objects":            {"redis_lazyfree_pending_objects", sample.Gauge, "Objects waiting to be freed."},
	"active_defrag_running":               {"redis_active_defrag_running", sample.Gauge, "Whether active defragmentation runs (CPU %)."},

	// Persistence
	"loading":                      {"redis_loading_dump_file", sample.Gauge, "Whether a dump file is being loaded."},
	"async_loading":                {"redis_async_loading", sample.Gauge, "Whether a replication dataset loads asynchronously."},
	"rdb_changes_since_last_save":  {"redis_rdb_changes_since_last_save", sample.Gauge, "Changes since the last RDB save."},
	"rdb_bgsave_in_progress":       {"redis_rdb_bgsave_in_progress", sample.Gauge, "Whether an RDB save is running."},
	"rdb_last_save_time":           {"redis_rdb_last_save_timestamp_seconds", sample.Gauge, "Time of the last successful RDB save, Unix seconds."},
	"rdb_last_bgsave_status":       {"redis_rdb_last_bgsave_status", sample.Gauge, "Whether the last RDB save succeeded (1) or not (0)."},
	"rdb_last_bgsave_time_sec":     {"redis_rdb_last_bgsave_duration_sec", sample.Gauge, "Duration of the last RDB save, in seconds."},
	"rdb_current_bgsave_time_sec":  {"redis_rdb_current_bgsave_duration_sec", sample.Gauge, "Duration of the running RDB save, in seconds."},
	"rdb_saves":                    {"redis_rdb_saves_total", sample.Gauge, "RDB saves since startup."},
	"rdb_last_cow_size":            {"redis_rdb_last_cow_size_bytes", sample.Gauge, "Copy-on-write bytes of the last RDB save."},
	"rdb_last_load_keys_expired":   {"redis_rdb_last_load_expired_keys", sample.Gauge, "Expired keys skipped by the last RDB load."},
	"rdb_last_load_keys_loaded":    {"redis_rdb_last_load_loaded_keys", sample.Gauge, "Keys loaded by the last RDB load."},
	"aof_enabled":                  {"redis_aof_enabled", sample.Gauge, "Whether AOF is on."},
	"aof_rewrite_in_progress":      {"redis_aof_rewrite_in_progress", sample.Gauge, "Whether an AOF rewrite is running."},
	"aof_rewrite_scheduled":        {"redis_aof_rewrite_scheduled", sample.Gauge, "Whether an AOF rewrite is scheduled."},
	"aof_last_rewrite_time_sec":    {"redis_aof_last_rewrite_duration_sec", sample.Gauge, "Duration of the last AOF rewrite, in seconds."},
	"aof_current_rewrite_time_sec": {"redis_aof_current_rewrite_duration_sec", sample.Gauge, "Duration of the running AOF rewrite, in seconds."},
	"aof_last_cow_size":            {"redis_aof_last_cow_size_bytes", sample.Gauge, "Copy-on-write bytes of the last AOF rewrite."},
	"aof_current_size":             {"redis_aof_current_size_bytes", sample.Gauge, "Current AOF size, in bytes."},
	"aof_base_size":                {"redis_aof_base_size_bytes", sample.Gauge, "AOF size at the last rewrite, in bytes."},
	"aof_pending_rewrite":          {"redis_aof_pending_rewrite", sample.Gauge, "Whether an AOF rewrite waits for an RDB save."},
	"aof_buffer_length":            {"redis_aof_buffer_length", sample.Gauge, "Size of the AOF buffer."},
	"aof_rewrite_buffer_length":    {"redis_aof_rewrite_buffer_length", sample.Gauge, "Size of the AOF rewrite buffer."},
	"aof_pending_bio_fsync":        {"redis_aof_pending_bio_fsync", sample.Gauge, "fsync jobs queued in the background."},
	"aof_delayed_fsync":            {"redis_aof_delayed_fsync", sample.Gauge, "Delayed fsync calls."},
	"aof_last_bgrewrite_status":    {"redis_aof_last_bgrewrite_status", sample.Gauge, "Whether the last AOF rewrite succeeded (1) or not (0)."},
	"aof_last_write_status":        {"redis_aof_last_write_status", sample.Gauge, "Whether the last AOF write succeeded (1) or not (0)."},
	"module_fork_in_progress":      {"redis_module_fork_in_progress", sample.Gauge, "Whether a module fork is running."},
	"module_fork_last_cow_size":    {"redis_module_fork_last_cow_size", sample.Gauge, "Copy-on-write bytes of the last module fork."},

	// Stats
	"total_connections_received":     {"redis_connections_received_total", sample.Counter, "Connections accepted."},
	"total_commands_processed":       {"redis_commands_processed_total", sample.Counter, "Commands processed."},
	"rejected_connections":           {"redis_rejected_connections_total", sample.Counter, "Connections rejected for maxclients."},
	"total_net_input_bytes":          {"redis_net_input_bytes_total", sample.Counter, "Bytes read from the network."},
	"total_net_output_bytes":         {"redis_net_output_bytes_total", sample.Counter, "Bytes written to the network."},
	"total_net_repl_input_bytes":     {"redis_net_repl_input_bytes_total", sample.Counter, "Bytes read for replication."},
	"total_net_repl_output_bytes":    {"redis_net_repl_output_bytes_total", sample.Counter, "Bytes written for replication."},
	"expired_subkeys":                {"redis_expired_subkeys_total", sample.Counter, "Hash fields expired."},
	"expired_fields":                 {"redis_expired_fields_total", sample.Counter, "Hash fields expired (Valkey)."},
	"expired_keys":                   {"redis_expired_keys_total", sample.Counter, "Keys expired."},
	"expired_stale_perc":             {"redis_expired_stale_percentage", sample.Gauge, "Estimated percentage of keys already expired."},
	"expired_time_cap_reached_count": {"redis_expired_time_cap_reached_total", sample.Counter, "Active expiry cycles stopped early."},
	"expire_cycle_cpu_milliseconds":  {"redis_expire_cycle_cpu_time_ms_total", sample.Counter, "Time spent in active expiry, in milliseconds."},
	"evicted_keys":                   {"redis_evicted_keys_total", sample.Counter, "Keys evicted for maxmemory."},
	"evicted_clients":                {"redis_evicted_clients_total", sample.Counter, "Clients evicted for maxmemory-clients."},
	"evicted_scripts":                {"redis_evicted_scripts_total", sample.Counter, "EVAL scripts evicted."},
	"total_eviction_exceeded_time":   {"redis_eviction_exceeded_time_ms_total", sample.Counter, "Time used_memory exceeded maxmemory, in milliseconds."},
	"current_eviction_exceeded_time": {"redis_current_eviction_exceeded_time_ms", sample.Gauge, "Time since used_memory exceeded maxmemory, in milliseconds."},
	"keyspace_hits":                  {"redis_keyspace_hits_total", sample.Counter, "Successful key lookups."},
	"keyspace_misses":                {"redis_keyspace_misses_total", sample.Counter, "Failed key lookups."},
	"pubsub_channels":                {"redis_pubsub_channels", sample.Gauge, "Channels with subscribers."},
	"pubsub_patterns":                {"redis_pubsub_patterns", sample.Gauge, "Patterns with subscribers."},
	"pubsubshard_channels":           {"redis_pubsubshard_channels", sample.Gauge, "Shard channels with subscribers."},
	"migrate_cached_sockets":         {"redis_migrate_cached_sockets_total", sample.Gauge, "Sockets open for MIGRATE."},
	"active_defrag_hits":             {"redis_defrag_hits", sample.Gauge, "Values reallocated by active defragmentation."},
	"active_defrag_misses":           {"redis_defrag_misses", sample.Gauge, "Reallocations skipped by active defragmentation."},
	"active_defrag_key_hits":         {"redis_defrag_key_hits", sample.Gauge, "Keys defragmented."},
	"active_defrag_key_misses":       {"redis_defrag_key_misses", sample.Gauge, "Keys skipped by active defragmentation."},
	"tracking_total_keys":            {"redis_tracking_total_keys", sample.Gauge, "Keys tracked for client-side caching."},
	"tracking_total_items":           {"redis_tracking_total_items", sample.Gauge, "Client-key pairs tracked."},
	"tracking_total_prefixes":        {"redis_tracking_total_prefixes", sample.Gauge, "Prefixes tracked in broadcast mode."},
	"unexpected_error_replies":       {"redis_unexpected_error_replies", sample.Counter, "Error replies from AOF loading or replication."},
	"total_error_replies":            {"redis_total_error_replies", sample.Counter, "Error replies sent."},
	"dump_payload_sanitizations":     {"redis_dump_payload_sanitizations", sample.Counter, "Deep sanitizations of RESTORE payloads."},
	"total_reads_processed":          {"redis_total_reads_processed", sample.Counter, "Read events processed."},
	"total_writes_processed":         {"redis_total_writes_processed", sample.Counter, "Write events processed."},
	"io_threaded_reads_processed":    {"redis_io_threaded_reads_processed", sample.Counter, "Read events processed by I/O threads."},
	"io_threaded_writes_processed":   {"redis_io_threaded_writes_processed", sample.Counter, "Write events processed by I/O threads."},
	"reply_buffer_shrinks":           {"redis_reply_buffer_shrinks_total", sample.Counter, "Client reply buffers shrunk."},
	"reply_buffer_expands":           {"redis_reply_buffer_expands_total", sample.Counter, "Client reply buffers grown."},
	"acl_access_denied_auth":         {"redis_acl_access_denied_auth_total", sample.Counter, "Failed authentications."},
	"acl_access_denied_cmd":          {"redis_acl_access_denied_cmd_total", sample.Counter, "Commands denied by ACL."},
	"acl_access_denied_key":          {"redis_acl_access_denied_key_total", sample.Counter, "Key accesses denied by ACL."},
	"acl_access_denied_channel":      {"redis_acl_access_denied_channel_total", sample.Counter, "Channel accesses denied by ACL."},
	"acl_access_denied_tls_cert":     {"redis_acl_access_denied_tls_cert_total", sample.Counter, "TLS certificate authentications denied (Valkey)."},
	"acl_access_denied_db":           {"redis_acl_access_denied_db_total", sample.Counter, "Database accesses denied by ACL (Valkey)."},

	"client_query_buffer_limit_disconnections":  {"redis_client_query_buffer_limit_disconnections_total", sample.Counter, "Clients dropped for query buffer limit."},
	"client_output_buffer_limit_disconnections": {"redis_client_output_buffer_limit_disconnections_total", sample.Counter, "Clients dropped for output buffer limit."},
	"expired_keys_with_volatile_items_stale_perc": {"redis_expired_keys_with_volatile_items_stale_percentage", sample.Gauge,
		"Estimated percentage of keys with expiring items already expired (Valkey)."},

	// Replication
	"connected_slaves":               {"redis_connected_slaves", sample.Gauge, "Connected replicas."},
	"replicas_waiting_psync":         {"redis_replicas_waiting_psync", sample.Gauge, "Replicas waiting for a partial sync (Valkey)."},
	"repl_backlog_size":              {"redis_replication_backlog_bytes", sample.Gauge, "Replication backlog size, in bytes."},
	"repl_backlog_active":            {"redis_repl_backlog_is_active", sample.Gauge, "Whether the replication backlog is active."},
	"repl_backlog_first_byte_offset": {"redis_repl_backlog_first_byte_offset", sample.Gauge, "Replication offset of the backlog's first byte."},
	"repl_backlog_histlen":           {"redis_repl_backlog_history_bytes", sample.Gauge, "Bytes of data in the replication backlog."},
	"master_repl_offset":             {"redis_master_repl_offset", sample.Gauge, "Replication offset of this server."},
	"second_repl_offset":             {"redis_second_repl_offset", sample.Gauge, "Offset up to which the previous replication id is accepted."},
	"slave_expires_tracked_keys":     {"redis_slave_expires_tracked_keys", sample.Gauge, "Keys tracked for expiry on a writable replica."},
	"slave_priority":                 {"redis_slave_priority", sample.Gauge, "Priority of this replica for failover."},
	"sync_full":                      {"redis_replica_resyncs_full", sample.Gauge, "Full resyncs with replicas."},
	"sync_partial_ok":                {"redis_replica_partial_resync_accepted", sample.Gauge, "Partial resyncs accepted."},
	"sync_partial_err":               {"redis_replica_partial_resync_denied", sample.Gauge, "Partial resyncs denied."},

	// CPU
	"used_cpu_sys":              {"redis_cpu_sys_seconds_total", sample.Counter, "System CPU of the server, in seconds."},
	"used_cpu_user":             {"redis_cpu_user_seconds_total", sample.Counter, "User CPU of the server, in seconds."},
	"used_cpu_sys_children":     {"redis_cpu_sys_children_seconds_total", sample.Counter, "System CPU of background processes, in seconds."},
	"used_cpu_user_children":    {"redis_cpu_user_children_seconds_total", sample.Counter, "User CPU of background processes, in seconds."},
	"used_cpu_sys_main_thread":  {"redis_cpu_sys_main_thread_seconds_total", sample.Counter, "System CPU of the main thread, in seconds."},
	"used_cpu_user_main_thread": {"redis_cpu_user_main_thread_seconds_total", sample.Counter, "User CPU of the main thread, in seconds."},

	// Cluster
	"cluster_stats_messages_sent":     {"redis_cluster_messages_sent_total", sample.Gauge, "Cluster bus messages sent."},
	"cluster_stats_messages_received": {"redis_cluster_messages_received_total", sample.Gauge, "Cluster bus messages received."},

	// KeyDB
	"server_threads":               {"redis_server_threads_total", sample.Gauge, "KeyDB server threads."},
	"long_lock_waits":              {"redis_long_lock_waits_total", sample.Gauge, "KeyDB long lock waits."},
	"current_client_thread":        {"redis_current_client_thread", sample.Gauge, "KeyDB thread serving this client."},
	"cached_keys":                  {"redis_cached_keys_total", sample.Counter, "KeyDB keys cached in memory."},
	"storage_provider_read_hits":   {"redis_storage_provider_read_hits", sample.Counter, "KeyDB storage provider read hits."},
	"storage_provider_read_misses": {"redis_storage_provider_read_misses", sample.Counter, "KeyDB storage provider read misses."},
}
