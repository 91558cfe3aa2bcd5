"""The fleet's driver: hands whole pairs to the nodes' actors and alone writes the results.

Slots. A node takes part when it offers the custom resource `alems_slot` (started with
`ray start … --resources='{"alems_slot": 1}'`); one actor holds that slot, so only one
measurement runs on a node at a time. A node offering more than one slot would measure runs
side by side: the driver uses one slot per node and says so.

Faults. When an actor dies (its worker killed, its node gone) or a finished result is lost
with its node, the pair it held goes back to the front of the queue and runs again on a
node that is alive; nothing of it was stored, because a pair is stored in one transaction
only after all its arms came back. A node whose slot frees again (a restarted worker, a node
that joins late) gets a new actor. A pair that takes down MAX_NODE_LOSSES nodes stops the
batch (rerun the same command to resume).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable

from alems.errors import AlemsError
from alems.experiment import baseline as baseline_mod
from alems.experiment.execute import stop_after, store_measured
from alems.experiment.fleet.node import NodeWorker
from alems.experiment.plan import BatchConfig, has_tax_pair, pair_units

SLOT = "alems_slot"
MAX_NODE_LOSSES = 3
POLL_S = 0.5                  # how often the driver looks for freed or new slots
START_TIMEOUT_S = 600.0       # the first node must load its model within this
JOIN_WAIT_S = 30.0            # then the batch waits this long for the others to join


def node_label(info: dict) -> str:
    """'host/1a2b3c4d': hostname and the start of the Ray node id."""
    return f"{info.get('host') or '?'}/{(info.get('node_id') or '?')[:8]}"


# `--ray-address HOST:PORT` that does not answer a TCP connect within this is refused at
# once (ray.init would retry silently for about two minutes).
RAY_PROBE_TIMEOUT_S = 2.0


def probe_ray_address(address: str, timeout_s: float = RAY_PROBE_TIMEOUT_S) -> None:
    """Fail fast (AlemsError) when `address` ([ray://]HOST:PORT) does not accept a TCP
    connection; `auto`/`local` (found by Ray itself) are left to ray.init."""
    import socket
    from urllib.parse import urlsplit

    text = address.strip()
    if text.lower() in ("auto", "local", ""):
        return
    try:
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise AlemsError(f"--ray-address {address!r} is not HOST:PORT ({exc})") from None
    if not host or port is None:
        raise AlemsError(f"--ray-address {address!r} is not HOST:PORT (nor auto)")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise AlemsError(f"the Ray cluster address {host}:{port} does not answer ({why} "
                         f"within {timeout_s:g} s); start one with `ray start --head` or "
                         "check the address") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise AlemsError("--ray-address needs Ray: pip install 'alems[fleet]'") from None
    return ray


class Fleet:
    """The actors of one batch on a Ray cluster (see the module docstring)."""

    def __init__(self, cfg: BatchConfig, actor_cls, log: Callable[[str], None], owns_ray: bool):
        self.cfg = cfg
        self.actor_cls = actor_cls
        self.log = log
        self.owns_ray = owns_ray
        self.ready: dict = {}          # actor -> describe() info
        self.spawning: dict = {}       # describe() ref -> (actor, node id)
        self.refused: set[str] = set()  # node ids whose actor could not start
        self._factories: tuple = (None, None)  # (sampler, provider) factories, from start()

    # ---- start and stop
    @classmethod
    def start(cls, cfg: BatchConfig, *, sampler_factory=None, provider_factory=None,
              log: Callable[[str], None]) -> Fleet:
        if cfg.ray_address is not None:
            probe_ray_address(cfg.ray_address)  # before importing Ray: seconds, not minutes
        ray = _ray()
        owns = not ray.is_initialized()
        if owns:
            try:
                ray.init(address=cfg.ray_address, logging_level="ERROR",
                         log_to_driver=False)
            except Exception as exc:  # noqa: BLE001 - ray raises many kinds here
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise AlemsError(f"cannot join the Ray cluster at {cfg.ray_address!r}: {why}; "
                                 "start one with `ray start --head` or check the address") from None
        actor_cls = ray.remote(num_cpus=0, resources={SLOT: 1}, max_restarts=0)(NodeWorker)
        fleet = cls(cfg, actor_cls, log, owns)
        fleet._factories = (sampler_factory, provider_factory)
        try:
            if not fleet.spawn():
                raise AlemsError(f"no node of the Ray cluster offers the resource {SLOT!r}; "
                                 f"start each measurement node with `ray start --address=HEAD:6379 "
                                 f"--resources='{{\"{SLOT}\": 1}}'`")
            deadline = time.monotonic() + START_TIMEOUT_S
            while not fleet.ready and fleet.spawning and time.monotonic() < deadline:
                fleet.collect(ray.wait(list(fleet.spawning), num_returns=1, timeout=POLL_S)[0])
            if not fleet.ready:
                raise AlemsError("no fleet node could start the batch"
                                 + ("" if fleet.refused else
                                    f" within {START_TIMEOUT_S:g} s (is the {SLOT} in use?)"))
            if fleet.spawning:   # the others join now, or later while the batch runs
                fleet.collect(ray.wait(list(fleet.spawning), num_returns=len(fleet.spawning),
                                       timeout=JOIN_WAIT_S)[0])
        except BaseException:
            fleet.close()
            raise
        sources = sorted({i["energy_source"] for i in fleet.ready.values()})
        if len(sources) > 1:
            log(f"fleet: nodes measure with different energy sources ({', '.join(sources)}); "
                "compare hosts with care (`alems summary` shows the tax per host)")
        return fleet

    def close(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            return
        for actor in list(self.ready) + [a for a, _ in self.spawning.values()]:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(actor)
        self.ready.clear()
        self.spawning.clear()
        if self.owns_ray:
            ray.shutdown()

    # ---- nodes
    def spawn(self) -> int:
        """Start an actor on each alive node that offers a slot and has none of ours;
        returns how many are starting."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ours = {i["node_id"] for i in self.ready.values()} | {n for _, n in self.spawning.values()}
        for node in ray.nodes():
            slots = node.get("Resources", {}).get(SLOT, 0)
            node_id = node.get("NodeID")
            if not node.get("Alive") or slots < 1 or node_id in ours | self.refused:
                continue
            if slots > 1:
                self.log(f"fleet: node {node.get('NodeManagerAddress')} offers {slots:g} "
                         f"{SLOT}s; one is used (two measurements must not share a machine)")
            actor = self.actor_cls.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id, soft=False)).remote(self.cfg, *self._factories)
            self.spawning[actor.describe.remote()] = (actor, node_id)
        return len(self.spawning)

    def collect(self, refs) -> list:
        """Take in finished describe() calls; returns the actors now ready."""
        ray = _ray()
        joined = []
        for ref in refs:
            actor, node_id = self.spawning.pop(ref)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as exc:
                info = {"node_id": node_id, "error": f"{type(exc).__name__}"}
            if info.get("error"):
                self.refused.add(node_id)
                self.log(f"fleet: node {node_label(info)} cannot run this batch: {info['error']}")
                ray.kill(actor)
                continue
            self.ready[actor] = info
            joined.append(actor)
            self.log(f"fleet: node {node_label(info)} joined ({info.get('cpu_model') or 'CPU ?'}, "
                     f"energy source {info['energy_source']})")
        return joined

    def providers(self) -> dict:
        """name -> an object with the node's provider `model` (for the experiments rows)."""
        from types import SimpleNamespace

        models = next(iter(self.ready.values())).get("models") or {}
        return {name: SimpleNamespace(model=models.get(name)) for name in self.cfg.providers}

    # ---- the batch
    def run(self, todo, exp_ids, group_id, conn, db_path, summary, progress) -> None:
        ray = _ray()
        cfg = self.cfg
        units = deque(pair_units(todo))
        paired = has_tax_pair(cfg.workflows)
        losses: Counter = Counter()
        baselines: dict = {}           # (host, energy source) -> Baseline with an id
        inflight: dict = {}            # run_pair ref -> (actor, unit)
        idle = deque(self.ready)
        summary.energy_source = ",".join(sorted({i["energy_source"] for i in self.ready.values()}))
        last_spawn_s = time.monotonic()

        def known_baseline(info):
            key = (info.get("host"), info["energy_source"])
            if key not in baselines:
                baselines[key] = baseline_mod.latest(conn, key[1], key[0])
            return baselines[key]

        progress.begin(len(todo))
        completed = False
        try:
            while units or inflight:
                while idle and units:
                    actor = idle.popleft()
                    if actor not in self.ready:
                        continue
                    unit = units.popleft()
                    ref = actor.run_pair.remote(unit, known_baseline(self.ready[actor]))
                    inflight[ref] = (actor, unit)
                    progress.running(unit[0])
                if units and time.monotonic() - last_spawn_s > POLL_S and not self.spawning:
                    self.spawn()
                    last_spawn_s = time.monotonic()
                if not inflight and not self.spawning:
                    raise AlemsError(f"no fleet node with a free {SLOT} is left and "
                                     f"{sum(map(len, units))} run(s) remain; rerun the same "
                                     "command to resume when nodes are back")
                ready, _ = ray.wait(list(inflight) + list(self.spawning), num_returns=1,
                                    timeout=POLL_S)
                spawned = [r for r in ready if r in self.spawning]
                idle.extend(self.collect(spawned))
                for ref in (r for r in ready if r in inflight):
                    actor, unit = inflight.pop(ref)
                    info = self.ready[actor]
                    try:
                        out = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                            ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError) as exc:
                        self._lost(actor, unit, exc, units, losses)
                        continue
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if exc.cause is not None else exc
                        raise AlemsError(f"fleet node {node_label(info)} failed: "
                                         f"{type(cause).__name__}: {cause}") from None
                    idle.append(actor)
                    if "baseline" in out:
                        self._store_baseline(conn, info, out, baselines)
                        units.appendleft(unit)
                        continue
                    items = [(exp_ids[(m.key.task, m.key.provider)], m) for m in out["runs"]]
                    rows = store_measured(conn, db_path, group_id, items, paired=paired,
                                          log=self.log)
                    for i, (_, m) in enumerate(items):
                        row = rows[i] if rows else {}
                        summary.ran += 1
                        if row.get("status") == "error":
                            self.log(f"run failed ({m.key.task}, {m.key.provider}, "
                                     f"{m.key.workflow}, rep {m.key.rep}) on "
                                     f"{node_label(info)}: {row.get('error')}")
                        progress.finished(m.key, row)
                        stop_after(m)
            completed = True
        finally:
            progress.end(completed)

    def _lost(self, actor, unit, exc, units, losses) -> None:
        info = self.ready.pop(actor)
        pair = tuple(k.order_index for k in unit)
        losses[pair] += 1
        what = f"{unit[0].task}/{unit[0].provider} rep {unit[0].rep}"
        if losses[pair] >= MAX_NODE_LOSSES:
            raise AlemsError(f"the pair {what} was lost with {losses[pair]} fleet nodes; "
                             "stopping (rerun the same command to resume)")
        self.log(f"fleet: node {node_label(info)} lost ({type(exc).__name__}); "
                 f"the pair {what} runs again on a node that is alive")
        units.appendleft(unit)

    def _store_baseline(self, conn, info, out, baselines) -> None:
        fresh = out["baseline"]
        if fresh.energy_source != info["energy_source"]:
            raise AlemsError(f"fleet node {node_label(info)}: baseline sampler used energy "
                             f"source {fresh.energy_source!r}, runs use "
                             f"{info['energy_source']!r}; pass the same --sources to both")
        self.log(f"fleet: node {node_label(info)} measured its idle baseline "
                 f"({fresh.repetitions} x {fresh.duration_s:g} s): {out['why']}")
        from alems.store import db as store_db

        with store_db.transaction(conn):
            baseline_mod.save(conn, fresh)
        note = baseline_mod.busy_note(fresh)
        if note:
            self.log(f"warning: fleet node {node_label(info)}: {note}")
        baselines[(info.get("host"), info["energy_source"])] = fresh
