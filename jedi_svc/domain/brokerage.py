"""Brokerage: which queues a task's jobs may go to, and which one each job gets. No I/O.

A queue is a candidate when it is online, allowed by the task, and takes the job's cores,
memory, walltime and disk (a limit of 0 means none). Each job goes to the candidate with the
highest weight (running + 1) / (queued + 10), times (1 + LOCALITY_WEIGHT x the fraction of the
job's input bytes with a replica on the queue's storage element), among the candidates whose
jobs may read every input: each file has a replica on a storage element that serves the queue
and is open to the task's VO. A queue's queued count grows with every job given to it, so a
batch spreads over the queues as PanDA's does."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "LOCALITY_WEIGHT", "QUEUED_STATES", "RUNNING_STATES", "Candidates", "ElementAccess", "JobRequest", "QueueInfo",
    "assign", "candidates", "locality", "unreadable",
]

LOCALITY_WEIGHT = 1.0

RUNNING_STATES = ("sent", "starting", "running", "holding", "transferring")
QUEUED_STATES = ("defined", "pending", "activated", "throttled")


@dataclass(frozen=True, slots=True)
class ElementAccess:
    """A configured storage element and who may use it: the queues whose jobs may, and the VOs
    whose jobs may (empty: every one), as the server enforces at submission."""

    element_id: str
    queues: frozenset[str] = frozenset()
    vos: frozenset[str] = frozenset()

    def serves(self, queue_id: str) -> bool:
        return not self.queues or queue_id in self.queues

    def open_to(self, vo: str) -> bool:
        return not self.vos or vo in self.vos


@dataclass
class QueueInfo:
    queue_id: str
    status: str
    max_cores: int = 0
    max_memory_mb: int = 0
    max_walltime_seconds: int = 0
    max_disk_mb: int = 0
    storage_element: str = ""
    running: int = 0
    queued: int = 0
    # The storage elements that serve the queue; None: not known, every replica is taken as usable.
    elements: tuple[ElementAccess, ...] | None = None
    # The ids of those open to each VO asked about: brokerage asks for every file of every job.
    _readable: dict[str, frozenset[str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def usable(self, replicas: list[str], vo: str) -> list[str]:
        """Of a file's replicas (element ids), those this queue's jobs of `vo` may read, the
        queue's own element first. A file with no replica recorded is read from the queue's."""
        if not replicas:
            return [""]
        if self.elements is None:
            usable = list(replicas)
        else:
            allowed = self._readable.get(vo)
            if allowed is None:
                allowed = self._readable[vo] = frozenset(e.element_id for e in self.elements if e.open_to(vo))
            usable = [r for r in replicas if r in allowed]
        if self.storage_element in usable:
            usable.remove(self.storage_element)
            usable.insert(0, self.storage_element)
        return usable

    def reads(self, inputs: list[tuple[int, list[str]]], vo: str) -> bool:
        return all(self.usable(replicas, vo) for _, replicas in inputs)

    def weight(self, locality: float) -> float:
        return (self.running + 1) / (self.queued + 10) * (1.0 + LOCALITY_WEIGHT * locality)


@dataclass(frozen=True)
class JobRequest:
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int


@dataclass
class Candidates:
    queues: list[QueueInfo]
    # Why each other queue was left out, for the task's history when none fits.
    rejected: dict[str, str] = field(default_factory=dict)

    def reason(self) -> str:
        if not self.rejected:
            return "no queue is registered"
        return "; ".join(f"{q}: {why}" for q, why in sorted(self.rejected.items()))


def candidates(
    queues: list[QueueInfo], request: JobRequest, *, allowed: list[str], excluded: list[str]
) -> Candidates:
    result = Candidates([])
    allowed_set, excluded_set = set(allowed), set(excluded)
    for queue in sorted(queues, key=lambda q: q.queue_id):
        why = ""
        if allowed_set and queue.queue_id not in allowed_set:
            why = "not among the task's queues"
        elif queue.queue_id in excluded_set:
            why = "excluded by the task"
        elif queue.status != "online":
            why = f"{queue.status}"
        else:
            for asked, limit, what in (
                (request.cores, queue.max_cores, "cores"),
                (request.memory_mb, queue.max_memory_mb, "MB memory"),
                (request.walltime_seconds, queue.max_walltime_seconds, "s walltime"),
                (request.disk_mb, queue.max_disk_mb, "MB disk"),
            ):
                if limit and asked > limit:
                    why = f"takes at most {limit} {what}, the task needs {asked}"
                    break
        if why:
            result.rejected[queue.queue_id] = why
        else:
            result.queues.append(queue)
    for name in sorted(allowed_set - {q.queue_id for q in queues}):
        result.rejected[name] = "no such queue"
    return result


def locality(input_replicas: list[tuple[int, list[str]]], storage_element: str) -> float:
    """Fraction of a job's input (by bytes; by files when sizes are unknown) held on `storage_element`."""
    if not input_replicas or not storage_element:
        return 0.0
    total = sum(size for size, _ in input_replicas)
    if total > 0:
        return sum(size for size, ses in input_replicas if storage_element in ses) / total
    return sum(1 for _, ses in input_replicas if storage_element in ses) / len(input_replicas)


def assign(queues: list[QueueInfo], jobs_inputs: list[list[tuple[int, list[str]]]],
           vo: str = "") -> list[QueueInfo | None]:
    """The queue for each job (same order), counting each assignment as queued on its queue;
    None for a job whose inputs none of the queues may read (see `unreadable`)."""
    chosen: list[QueueInfo | None] = []
    distinct_ses = {q.storage_element for q in queues}
    for inputs in jobs_inputs:
        able = [q for q in queues if q.reads(inputs, vo)]
        if not able:
            chosen.append(None)
            continue
        local = {se: locality(inputs, se) for se in distinct_ses}
        best = max(able, key=lambda q: (q.weight(local[q.storage_element]), _reverse(q.queue_id)))
        best.queued += 1
        chosen.append(best)
    return chosen


def unreadable(queues: list[QueueInfo], inputs: list[tuple[str, list[str]]], vo: str) -> str:
    """Why none of the queues may read a job's inputs ((name, replicas) pairs): the first file
    no queue reads, where it is, and which queues were asked."""
    for name, replicas in inputs:
        if not any(q.usable(replicas, vo) for q in queues):
            where = ", ".join(replicas) or "no storage element"
            return (f"no candidate queue may read {name} (on {where}) for VO {vo or '-'}: "
                    f"asked {', '.join(q.queue_id for q in queues)}")
    return "no candidate queue may read all of a job's inputs from one queue"


def _reverse(text: str) -> tuple[int, ...]:
    # Ties go to the queue whose name sorts first.
    return tuple(-ord(c) for c in text)
