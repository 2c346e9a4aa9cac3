from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PauseContainerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "pid", "uid", "cgroup_layout", "writable_controllers", "running_containers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    CGROUP_LAYOUT_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_CONTROLLERS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    pid: int
    uid: int
    cgroup_layout: str
    writable_controllers: _containers.RepeatedScalarFieldContainer[str]
    running_containers: int
    def __init__(self, version: _Optional[str] = ..., pid: _Optional[int] = ..., uid: _Optional[int] = ..., cgroup_layout: _Optional[str] = ..., writable_controllers: _Optional[_Iterable[str]] = ..., running_containers: _Optional[int] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("memory_bytes", "memory_swap_bytes", "pids", "cpu_quota_us", "cpu_period_us", "cpu_shares")
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SWAP_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    CPU_QUOTA_US_FIELD_NUMBER: _ClassVar[int]
    CPU_PERIOD_US_FIELD_NUMBER: _ClassVar[int]
    CPU_SHARES_FIELD_NUMBER: _ClassVar[int]
    memory_bytes: int
    memory_swap_bytes: int
    pids: int
    cpu_quota_us: int
    cpu_period_us: int
    cpu_shares: int
    def __init__(self, memory_bytes: _Optional[int] = ..., memory_swap_bytes: _Optional[int] = ..., pids: _Optional[int] = ..., cpu_quota_us: _Optional[int] = ..., cpu_period_us: _Optional[int] = ..., cpu_shares: _Optional[int] = ...) -> None: ...

class IdMap(_message.Message):
    __slots__ = ("inside", "outside", "count")
    INSIDE_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    inside: int
    outside: int
    count: int
    def __init__(self, inside: _Optional[int] = ..., outside: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class StartContainerRequest(_message.Message):
    __slots__ = ("id", "state_dir", "lower_dirs", "upper_dir", "work_dir", "rootfs", "readonly_rootfs", "argv", "env", "cwd", "uid", "gid", "hostname", "network", "limits", "uid_maps", "gid_maps", "default_pids_limit", "remove_when_done", "tty", "stdin", "tty_rows", "tty_cols", "binds", "tmpfs", "init", "join_container_id", "log_max_bytes", "cap_add", "cap_drop")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    LOWER_DIRS_FIELD_NUMBER: _ClassVar[int]
    UPPER_DIR_FIELD_NUMBER: _ClassVar[int]
    WORK_DIR_FIELD_NUMBER: _ClassVar[int]
    ROOTFS_FIELD_NUMBER: _ClassVar[int]
    READONLY_ROOTFS_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    UID_MAPS_FIELD_NUMBER: _ClassVar[int]
    GID_MAPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMOVE_WHEN_DONE_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TTY_ROWS_FIELD_NUMBER: _ClassVar[int]
    TTY_COLS_FIELD_NUMBER: _ClassVar[int]
    BINDS_FIELD_NUMBER: _ClassVar[int]
    TMPFS_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    JOIN_CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    CAP_DROP_FIELD_NUMBER: _ClassVar[int]
    id: str
    state_dir: str
    lower_dirs: _containers.RepeatedScalarFieldContainer[str]
    upper_dir: str
    work_dir: str
    rootfs: str
    readonly_rootfs: bool
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    uid: int
    gid: int
    hostname: str
    network: str
    limits: Limits
    uid_maps: _containers.RepeatedCompositeFieldContainer[IdMap]
    gid_maps: _containers.RepeatedCompositeFieldContainer[IdMap]
    default_pids_limit: bool
    remove_when_done: bool
    tty: bool
    stdin: bool
    tty_rows: int
    tty_cols: int
    binds: _containers.RepeatedCompositeFieldContainer[BindMount]
    tmpfs: _containers.RepeatedCompositeFieldContainer[TmpfsMount]
    init: bool
    join_container_id: str
    log_max_bytes: int
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    cap_drop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., state_dir: _Optional[str] = ..., lower_dirs: _Optional[_Iterable[str]] = ..., upper_dir: _Optional[str] = ..., work_dir: _Optional[str] = ..., rootfs: _Optional[str] = ..., readonly_rootfs: _Optional[bool] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., hostname: _Optional[str] = ..., network: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., uid_maps: _Optional[_Iterable[_Union[IdMap, _Mapping]]] = ..., gid_maps: _Optional[_Iterable[_Union[IdMap, _Mapping]]] = ..., default_pids_limit: _Optional[bool] = ..., remove_when_done: _Optional[bool] = ..., tty: _Optional[bool] = ..., stdin: _Optional[bool] = ..., tty_rows: _Optional[int] = ..., tty_cols: _Optional[int] = ..., binds: _Optional[_Iterable[_Union[BindMount, _Mapping]]] = ..., tmpfs: _Optional[_Iterable[_Union[TmpfsMount, _Mapping]]] = ..., init: _Optional[bool] = ..., join_container_id: _Optional[str] = ..., log_max_bytes: _Optional[int] = ..., cap_add: _Optional[_Iterable[str]] = ..., cap_drop: _Optional[_Iterable[str]] = ...) -> None: ...

class BindMount(_message.Message):
    __slots__ = ("source", "destination", "readonly")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    READONLY_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    readonly: bool
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ..., readonly: _Optional[bool] = ...) -> None: ...

class TmpfsMount(_message.Message):
    __slots__ = ("destination", "size_bytes")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    destination: str
    size_bytes: int
    def __init__(self, destination: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class AttachInput(_message.Message):
    __slots__ = ("id", "from_start", "data", "rows", "cols", "close_stdin")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_START_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STDIN_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_start: bool
    data: bytes
    rows: int
    cols: int
    close_stdin: bool
    def __init__(self, id: _Optional[str] = ..., from_start: _Optional[bool] = ..., data: _Optional[bytes] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., close_stdin: _Optional[bool] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[ContainerStats]
    def __init__(self, stats: _Optional[_Iterable[_Union[ContainerStats, _Mapping]]] = ...) -> None: ...

class ContainerStats(_message.Message):
    __slots__ = ("id", "memory_bytes", "memory_limit_bytes", "pids", "pids_limit", "cpu_usage_ns", "read_time_unix_nano", "has_cgroup")
    ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CPU_USAGE_NS_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    HAS_CGROUP_FIELD_NUMBER: _ClassVar[int]
    id: str
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    pids_limit: int
    cpu_usage_ns: int
    read_time_unix_nano: int
    has_cgroup: bool
    def __init__(self, id: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ..., pids: _Optional[int] = ..., pids_limit: _Optional[int] = ..., cpu_usage_ns: _Optional[int] = ..., read_time_unix_nano: _Optional[int] = ..., has_cgroup: _Optional[bool] = ...) -> None: ...

class StartContainerResponse(_message.Message):
    __slots__ = ("pid", "started_at")
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    pid: int
    started_at: str
    def __init__(self, pid: _Optional[int] = ..., started_at: _Optional[str] = ...) -> None: ...

class ReadLogsRequest(_message.Message):
    __slots__ = ("id", "follow", "stdout", "stderr")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    id: str
    follow: bool
    stdout: bool
    stderr: bool
    def __init__(self, id: _Optional[str] = ..., follow: _Optional[bool] = ..., stdout: _Optional[bool] = ..., stderr: _Optional[bool] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("stream", "data", "time_unix_nano")
    class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STREAM_UNSPECIFIED: _ClassVar[LogChunk.Stream]
        STREAM_STDOUT: _ClassVar[LogChunk.Stream]
        STREAM_STDERR: _ClassVar[LogChunk.Stream]
    STREAM_UNSPECIFIED: LogChunk.Stream
    STREAM_STDOUT: LogChunk.Stream
    STREAM_STDERR: LogChunk.Stream
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    stream: LogChunk.Stream
    data: bytes
    time_unix_nano: int
    def __init__(self, stream: _Optional[_Union[LogChunk.Stream, str]] = ..., data: _Optional[bytes] = ..., time_unix_nano: _Optional[int] = ...) -> None: ...

class WaitContainerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class SignalContainerRequest(_message.Message):
    __slots__ = ("id", "signal")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    id: str
    signal: int
    def __init__(self, id: _Optional[str] = ..., signal: _Optional[int] = ...) -> None: ...

class SignalContainerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopContainerRequest(_message.Message):
    __slots__ = ("id", "signal", "timeout_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    signal: int
    timeout_seconds: int
    def __init__(self, id: _Optional[str] = ..., signal: _Optional[int] = ..., timeout_seconds: _Optional[int] = ...) -> None: ...

class GetStatesRequest(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetStatesResponse(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[ContainerState]
    def __init__(self, states: _Optional[_Iterable[_Union[ContainerState, _Mapping]]] = ...) -> None: ...

class ContainerState(_message.Message):
    __slots__ = ("id", "status", "pid", "exit_code", "oom_killed", "started_at", "finished_at", "memory_bytes", "memory_limit_bytes", "pids", "error", "paused")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    pid: int
    exit_code: int
    oom_killed: bool
    started_at: str
    finished_at: str
    memory_bytes: int
    memory_limit_bytes: int
    pids: int
    error: str
    paused: bool
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., oom_killed: _Optional[bool] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ..., pids: _Optional[int] = ..., error: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class ReleaseContainerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ReleaseContainerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
