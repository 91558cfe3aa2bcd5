"""`alems sample [OPTIONS] -- COMMAND [ARGS...]`: run one command under the sampler.

Everything that can be checked is checked before the command starts (rate, output
locations, the command itself, explicitly requested sources), so a mistake costs one
clear line, not a wasted run. The command is spawned gated: the sampler attaches its perf
counters first, then the command is released, so counters see its first instruction.
SIGINT/SIGTERM/SIGHUP are forwarded to the command; whatever happens to it, the samples
taken so far are written as a complete Parquet file and `alems` exits with its exit code
(128 + N when signal N killed it).

With `-o run.parquet` the samples stream to `run.parquet.partial` while the command runs
(alems.measure.stream); after a kill of `alems` itself, `--recover run.parquet` keeps them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from alems import config
from alems.errors import AlemsError, UsageError
from alems.outputs import check_output_path
from alems.measure.names import MAX_HZ, MIN_HZ, SOURCE_NAMES as KNOWN_SOURCES
from alems.cli._common import MsrPathOption, ProcRootOption, SysfsRootOption, handle_errors
from alems.cli.sample_summary import (data_warnings, print_summary, summary_for_output,
                                      write_summary_json)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class CommandNotFound(AlemsError):
    """The command to measure does not exist (shell convention: exit 127)."""

    exit_code = 127


class CommandNotExecutable(AlemsError):
    """The command exists but cannot be run (shell convention: exit 126)."""

    exit_code = 126


# ---------------------------------------------------------------- validation (pure)


def validate_rate(name: str, hz: float) -> float:
    if not (hz > 0):  # also rejects NaN
        raise UsageError(f"{name} must be > 0 (got {hz:g}); e.g. {name} 1000")
    if hz < MIN_HZ:
        raise UsageError(f"{name} {hz:g} is too low; the minimum is {MIN_HZ:g}")
    if hz > MAX_HZ:
        raise UsageError(f"{name} {hz:g} is too high; the maximum is {MAX_HZ:g}")
    return float(hz)


def parse_sources(text: str | None) -> list[str] | None:
    """'powercap, perf' -> ['powercap', 'perf']; None/'' -> None (automatic choice)."""
    if text is None or not text.strip():
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN_SOURCES]
    if unknown:
        raise UsageError(
            f"unknown source(s) {', '.join(unknown)} in --sources; "
            f"choose from {', '.join(KNOWN_SOURCES)}"
        )
    return list(dict.fromkeys(names))


def check_writable(path: Path, flag: str) -> Path:
    """Fail now, not after the run, if `path` cannot be written (alems.outputs)."""
    return check_output_path(path, flag)


def _check_samples_target(output: Path) -> None:
    """The samples stream to `<output>.partial` beside the output and are renamed onto it:
    only a regular file (or a new name) can take that; a device, FIFO, socket or
    directory is refused (and nothing is ever created beside a device, e.g. in /dev)."""
    from alems.atomic_io import kind_of as _kind

    try:
        mode = os.stat(output).st_mode
    except OSError:
        return  # absent (or unreachable: check_writable says why)
    if not stat.S_ISREG(mode):
        raise UsageError(f"--output {output} is {_kind(mode)}; the samples need a regular "
                         f"file (they stream to {output.name}.partial beside it), give a "
                         "regular file name")


def check_outputs(output: Path | None, summary_json: Path | None, hz: float) -> None:
    """Both outputs writable, distinct, and room for the samples (see sample_bytes_needed)."""
    from alems.atomic_io import writes_directly
    from alems.outputs import check_free_space, same_file

    if output is not None:
        _check_samples_target(output)
        check_writable(output, "--output")
    if summary_json is not None:
        check_writable(summary_json, "--summary-json")
    if output is not None and summary_json is not None and same_file(output, summary_json) \
            and not writes_directly(output):
        raise UsageError(f"-o and --summary-json both name {output}; the JSON would "
                         "overwrite the samples, give two different files")
    if output is not None and not writes_directly(output):
        check_free_space(output, sample_bytes_needed(hz), what="--output")


# Room an output needs before the command starts: FREE_SPACE_MIN_S of samples at the
# requested rate, each row at most SAMPLE_ROW_BYTES (t_ns + ~30 counter columns, 8 B each,
# before compression), plus a margin for Parquet's metadata.
FREE_SPACE_MIN_S = 600
SAMPLE_ROW_BYTES = 256
FREE_SPACE_MARGIN_BYTES = 1 << 20


def sample_bytes_needed(hz: float) -> int:
    return int(hz * FREE_SPACE_MIN_S * SAMPLE_ROW_BYTES) + FREE_SPACE_MARGIN_BYTES


def resolve_command(argv: list[str]) -> str:
    """Return the executable's path, or fail the way a shell would (127 / 126)."""
    if not argv:
        raise UsageError("no command given; usage: alems sample [OPTIONS] -- COMMAND [ARGS...]")
    name = argv[0]
    if os.sep in name:
        if not os.path.exists(name):
            raise CommandNotFound(f"command not found: {name}")
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise CommandNotExecutable(f"cannot execute {name}: permission denied or a directory")
        return name
    found = shutil.which(name)
    if found is None:
        raise CommandNotFound(f"command not found: {name} (not on PATH)")
    return found


def exit_code_of(returncode: int) -> int:
    """Popen's returncode -> shell exit status (negative N = killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


# ---------------------------------------------------------------- running


def check_requested_sources(names: list[str] | None, roots: dict) -> None:
    """Each explicitly requested source must be readable; say why not and how to fix."""
    if not names:
        return
    from alems.measure.sources import availability_of  # local import keeps `alems --help` fast

    for name in names:
        av = availability_of(name, **roots)
        if not av.ok:
            fix = f"; fix: {av.fix}" if av.fix else ""
            raise AlemsError(f"source '{name}' is not readable here: {av.reason}{fix}")


class SignalForwarder:
    """While installed, SIGINT/SIGTERM/SIGHUP sent to us go to the measured command.

    Installed before the command is spawned and removed only after the outputs are
    written. A signal reaches the command while it runs (`running` .. `ended`); at any
    other moment nothing would act on it, so it stops alems itself (Terminated /
    KeyboardInterrupt): before the release the gated command is cancelled; after the
    command ended the output being written is abandoned, its samples stay in the
    `.partial` stream. The one exception: the first SIGINT after the end, which a
    terminal's Ctrl-C sends to alems and the command together, is only noted."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.received: list[int] = []
        self._state = "before"  # -> "running" -> "ended"
        self._raised = False
        self._previous: dict = {}

    def _handle(self, signum, _frame) -> None:
        self.received.append(signum)
        if self._state == "running" and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)
            return
        if self._state == "ended" and signum == signal.SIGINT \
                and self.received.count(signal.SIGINT) == 1:
            return
        if self._raised:
            return
        self._raised = True
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        from alems.interrupts import Terminated

        raise Terminated(signum)

    def attach(self, pid: int) -> None:
        """The (gated) command's pid; from `running()` on, signals go to it."""
        self.pid = pid

    def running(self) -> None:
        self._state = "running"

    def ended(self) -> None:
        """The command was reaped: its pid may be reused, never signal it again."""
        self._state = "ended"

    def __enter__(self) -> SignalForwarder:
        self._previous = {s: signal.signal(s, self._handle) for s in FORWARDED_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _switches(ru) -> dict:
    return {"voluntary_ctxt_switches": ru.ru_nvcsw, "nonvoluntary_ctxt_switches": ru.ru_nivcsw}


def run_sampled(argv: list[str], forwarder: SignalForwarder, *, hz: float,
                sources: list[str] | None, slow_hz: float, roots: dict,
                stream: Path | None = None, full_rate_counters: bool = False,
                gpus: list[int] | None = None):
    """Spawn `argv` gated, sample it until it exits; return (result, returncode).
    stream: the samples go to this Arrow IPC file as they come (else only the summary
    is kept)."""
    from alems.measure.markchannel import MarkChannel
    from alems.measure.phases import PhaseRecorder
    from alems.measure.sampler import Sampler
    from alems.measure.spawn import spawn_gated

    before = _switches(resource.getrusage(resource.RUSAGE_CHILDREN))
    # The command's marker channel (alems.measure.markchannel): its marks become phases.
    recorder = PhaseRecorder()
    channel, no_channel = MarkChannel(recorder), None
    try:
        channel.open()
    except OSError as exc:  # no room for a FIFO: measure anyway, without marks
        channel.close()
        no_channel = f"phase marks: no marker channel ({exc.strerror or exc})"
    try:
        proc, release = spawn_gated(argv, env=config.environ_with(channel.env))
    except BaseException:
        channel.close()
        raise
    forwarder.attach(proc.pid)
    released = False
    try:
        # The command's context switches come exactly from its rusage once it is
        # reaped, so the sampler need not poll /proc for them between drains.
        sampler = Sampler(hz, sources=sources, pid=proc.pid, slow_hz=slow_hz,
                          counters_full_rate=full_rate_counters, keep_samples=False,
                          switch_poll_s=None, gpus=gpus, **roots)
        sampler.recorder = recorder
        if stream is not None:
            sampler.stream_to(stream)
        sampler.start()
        try:
            forwarder.running()  # before the release: a signal kills the gate at worst
            release()
            released = True
            returncode = proc.wait()
        finally:
            forwarder.ended()
            channel.close()  # the marks written so far are in before the samples end
            result = sampler.stop()
        after = _switches(resource.getrusage(resource.RUSAGE_CHILDREN))
        if no_channel:
            result.update_summary(source_notes=[*result.summary["source_notes"], no_channel])
        result.update_summary(
            process={k: after[k] - before[k] for k in after},
            process_scope="the command and every descendant it waited for, all their "
                          "threads (getrusage RUSAGE_CHILDREN)")
    finally:
        if not released:  # the sampler failed: the command must never run
            release(cancel=True)  # closes the gate; the helper exits without exec
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return result, returncode


# ---------------------------------------------------------------- command


def register(app: typer.Typer) -> None:
    @app.command(
        "sample",
        # the command starts at `--` or its first word
        context_settings={"allow_interspersed_args": False},
    )
    @handle_errors
    def sample(
        command: Annotated[list[str] | None, typer.Argument(
            help="The command to measure and its arguments (put them after `--`).",
            show_default=False)] = None,
        hz: Annotated[float, typer.Option("--hz", help="Samples per second.")] = config.DEFAULT_HZ,
        output: Annotated[Path | None, typer.Option(
            "-o", "--output", help="Write the samples to this Parquet file.")] = None,
        summary_json: Annotated[Path | None, typer.Option(
            "--summary-json", help="Also write the summary as JSON to this file.")] = None,
        sources: Annotated[str | None, typer.Option(
            "--sources", help=f"Comma list among {', '.join(KNOWN_SOURCES)}; "
            "default: automatic (first energy source that works, else an estimate).")] = None,
        slow_hz: Annotated[float, typer.Option(
            "--slow-hz", help="Rate of the slow sources (thermal, cpuidle, /proc/stat).")
        ] = config.DEFAULT_SLOW_HZ,
        gpus: Annotated[str | None, typer.Option(
            "--gpus", help="NVIDIA GPUs to measure (NVML indices, e.g. 0,2; or none); "
            "default: CUDA_VISIBLE_DEVICES, else all (none without NVML).")] = None,
        quiet: Annotated[bool, typer.Option(
            "--quiet", "-q", help="Do not print the summary table.")] = False,
        full_rate_counters: Annotated[bool, typer.Option(
            "--full-rate-counters", help="Read the process's perf counters at --hz too "
            "(default: at --slow-hz; they are cumulative).")] = False,
        pid: Annotated[int | None, typer.Option(
            "--pid", help="Attach to this running process instead of running a command "
            "(all its threads, like `perf stat -p`) until Ctrl-C, --duration or its exit.",
            metavar="PID", show_default=False)] = None,
        duration: Annotated[float | None, typer.Option(
            "--duration", help="With --pid: stop after this many seconds.",
            metavar="S", show_default=False)] = None,
        recover: Annotated[Path | None, typer.Option(
            "--recover", help="Turn PATH.partial, the samples stream of a killed run, into "
            "the Parquet file PATH; no command.", show_default=False)] = None,
        sysfs_root: SysfsRootOption = config.SYSFS_ROOT,
        proc_root: ProcRootOption = config.PROC_ROOT,
        msr_path: MsrPathOption = "/dev/cpu/{cpu}/msr",
    ) -> None:
        """Run COMMAND under the sampler; write samples (Parquet) and a summary."""
        argv = list(command or [])
        if recover is not None:
            if argv:
                raise UsageError("--recover takes no command; usage: alems sample "
                                 "--recover run.parquet")
            from alems.measure.stream import recover as recover_stream

            check_output_path(recover, "--recover")
            got = recover_stream(recover)
            print(f"alems: recovered {got['samples']:,} samples ({got['duration_s']:.3f} s) "
                  f"into {recover} (marked recovered in its metadata)", file=sys.stderr)
            raise typer.Exit(0)
        from alems.cli.sample_attach import check_attach_args

        duration = check_attach_args(pid, argv, duration)
        hz = validate_rate("--hz", hz)
        slow_hz = validate_rate("--slow-hz", slow_hz)
        source_names = parse_sources(sources)
        from alems.measure.sources.gpu import parse_gpus  # local: keeps --help fast

        gpu_list = parse_gpus(gpus)
        # The sampler's environment settings, checked before anything runs (whichever
        # energy source this machine ends up using).
        config.estimate_w_per_core()
        config.rt_priority()
        check_outputs(output, summary_json, hz)
        stream = None
        if output is not None:
            from alems.measure.stream import check_no_partial

            stream = check_no_partial(output)
        if pid is None:
            resolve_command(argv)
        roots = {"sysfs_root": sysfs_root, "proc_root": proc_root, "msr_path": msr_path}
        check_requested_sources(source_names, roots)
        if pid is not None:
            from alems.cli.sample_attach import sample_attached

            sample_attached(pid, duration, output, summary_json, quiet, stream,
                            hz=hz, sources=source_names, slow_hz=slow_hz, roots=roots,
                            full_rate_counters=full_rate_counters, gpus=gpu_list)
            raise typer.Exit(0)

        with contextlib.ExitStack() as stack:
            if stream is None:  # phase energies need the samples: a private stream, removed
                with contextlib.suppress(OSError):  # no room for it: the summary only
                    scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="alems-"))
                    stream = Path(scratch) / "samples.partial"
            with SignalForwarder() as forwarder:
                result, returncode = run_sampled(
                    argv, forwarder, hz=hz, sources=source_names, slow_hz=slow_hz, roots=roots,
                    stream=stream, full_rate_counters=full_rate_counters, gpus=gpu_list)
                code = exit_code_of(returncode)
                if output is not None:
                    result.write_parquet(output)
                summary = summary_for_output(result, argv, code, output)
                summary["warnings"] = data_warnings(summary)
                if summary_json is not None:
                    write_summary_json(summary_json, summary)
        if not quiet:
            print_summary(summary)
        for warning in summary["warnings"]:  # even with --quiet: they concern the data
            print(f"alems: warning: {warning}", file=sys.stderr)
        if not quiet and forwarder.received:
            names = ", ".join(signal.Signals(s).name for s in forwarder.received)
            print(f"alems: forwarded {names} to the command; samples so far were kept",
                  file=sys.stderr)
        raise typer.Exit(code)
