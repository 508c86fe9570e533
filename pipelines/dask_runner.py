"""Beam's ``DaskRunner`` with the fixes the beam-rag pipelines need to run correctly on Dask.

    beam-rag ingest ... --runner pipelines.dask_runner.DaskRunner \\
        --dask_client_address tcp://scheduler:8786

Beam 2.77's ``apache_beam.runners.dask.DaskRunner`` runs simple pipelines, but it
cannot run ours correctly: the first four points below break any pipeline with
dead-letter outputs, sinks on several branches or batching (ours has all three),
silently or loudly; the others keep it from spreading the work or hide failures.

1. Tagged outputs are not separated: every consumer of a multi-output ``ParDo``
   (``.with_outputs(...)``) receives all of its outputs, main and tagged mixed.
2. Elements emitted from ``finish_bundle`` are dropped (the partition's results are
   collected before ``finish_bundle`` runs), which loses the last batch of
   ``BatchElements`` (so of ``RunInference`` and ``MLTransform``) and our writer's summary.
3. Only the last transform applied is computed: every other branch (here: the
   Redis write and publish, when the dead-letter write comes last) never runs.
4. A side input is computed inside the consuming task (``list(bag)`` there), which
   recomputes its whole upstream graph, side effects included, outside the scheduler.
5. Nothing ever increases the number of partitions: a pipeline that starts from one
   ``Create`` (as every file-based read does) runs as a single chain of tasks.
6. ``wait_until_finish`` reports success when Dask cancelled the computation.
7. Task names depend only on content, so two runs of one pipeline on a long-lived
   cluster share task names, and a run can be handed results that another client
   still holds (stale, if the input files changed in between).

This subclass keeps Beam's overrides and its translation of each primitive (Create,
ParDo, GroupByKey, Flatten) and changes only those points: ``ParDo`` partitions return
``(tag, value)`` pairs collected after ``finish_bundle`` and each consumer filters its
own tag; side inputs are graph dependencies (computed once, by the scheduler, before
the tasks that read them); every leaf of the pipeline is computed, in one graph, so a
step shared by several branches runs once; a ``GroupByKey`` spreads its output over
``--dask_npartitions`` partitions; a cancelled computation is a failure; every run's
task names are its own. Metrics are still not reported to the driver
(``result.metrics()`` raises, as upstream), so ``beam-rag ingest`` prints no counts on
Dask; stateful and splittable DoFns and unbounded sources remain unsupported, as upstream.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import uuid
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam
from apache_beam import DoFn, TaggedOutput, pvalue
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner as upstream
from apache_beam.runners.dask.overrides import _Create, _GroupByKeyOnly, dask_overrides
from apache_beam.runners.dask.transform_evaluator import (
    TRANSLATIONS, Flatten, NoOp, OneReceiver, defenestrate, get_windowed_value,
)
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.sideinputs import SideInputMap

__all__ = ["DaskRunner"]


@dataclasses.dataclass(frozen=True)
class _SideInputSpec:
    """What a task needs to rebuild a side input's ``SideInputMap`` from its values."""

    view_class: Any
    view_options: dict[str, Any]
    window_mapping_fn: Any


class _WindowedValues:
    """A side input's computed values as the ``WindowedValue``s ``SideInputMap`` reads."""

    def __init__(self, values: Sequence[Any], window_fn: Any):
        self.values = values
        self.window_fn = window_fn

    def __iter__(self) -> Iterator[Any]:
        for value in self.values:
            yield get_windowed_value(value, self.window_fn)


def _concat(partitions: Iterable[Iterable[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(partitions))


def _run_bundle(items: Iterable[Any], fn: DoFn, window_fn: Any, label: str, args: Sequence[Any],
                kwargs: dict[str, Any], side_specs: Sequence[_SideInputSpec],
                *side_values: Sequence[Any]) -> list[tuple[str | None, Any]]:
    """One Dask partition as one Beam bundle; returns ``(tag, value)`` pairs (main tag None)."""
    receivers = OneReceiver()  # fresh per bundle: nothing leaks between partitions
    handler = _OutputHandler(
        window_fn=window_fn, main_receivers=receivers[None], tagged_receivers=receivers,
        per_element_output_counter=None, output_batch_converter=None,
        process_yields_batches=False, process_batch_yields_elements=False)
    side_inputs = [SideInputMap(spec.view_class, spec.view_options,
                                _WindowedValues(values, spec.window_mapping_fn))
                   for spec, values in zip(side_specs, side_values)]
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn), handler, context=DoFnContext(label, state=None), side_inputs=side_inputs,
        input_args=list(args), input_kwargs=dict(kwargs), user_state_context=None,
        bundle_finalizer_param=DoFn.BundleFinalizerParam())
    invoker.invoke_setup()
    try:
        invoker.invoke_start_bundle()
        for item in items:
            invoker.invoke_process(item)
        invoker.invoke_finish_bundle()
    finally:
        invoker.invoke_teardown()
    # Collected after finish_bundle, so what it emits is kept (fix 2).
    return [(out.tag, out.value.value) if isinstance(out, TaggedOutput) else (None, out.value)
            for out in receivers.values]


class _HasTag:
    def __init__(self, tag: str | None):
        self.tag = tag

    def __call__(self, pair: tuple[str | None, Any]) -> bool:
        return pair[0] == self.tag


def _value(pair: tuple[str | None, Any]) -> Any:
    return pair[1]


def _key(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _grouped(group: tuple[Any, list[tuple[Any, Any]]]) -> tuple[Any, list[Any]]:
    key, pairs = group
    return key, [defenestrate(windowed) for _, windowed in pairs]


class _Translator(PipelineVisitor):
    """Beam transforms to Dask bags, keeping each ParDo's outputs apart by tag."""

    def __init__(self, bag_kwargs: dict[str, Any]):
        self.bag_kwargs = bag_kwargs
        self.bags: dict[AppliedPTransform, Any] = {}
        self.tagged: set[AppliedPTransform] = set()  # bags of (tag, value) pairs
        self.consumed: set[AppliedPTransform] = set()

    def bag_of(self, pcoll: pvalue.PValue) -> Any:
        """The bag of one PCollection: its producer's bag, narrowed to its tag (fix 1)."""
        producer = pcoll.producer
        self.consumed.add(producer)
        bag = self.bags[producer]
        if producer in self.tagged:
            bag = bag.filter(_HasTag(pcoll.tag)).map(_value)
        return bag

    def visit_transform(self, node: AppliedPTransform) -> None:
        inputs = [None if isinstance(i, pvalue.PBegin) else self.bag_of(i) for i in node.inputs]
        if type(node.transform) is beam.ParDo:  # exactly, as upstream: subclasses are no-ops there
            self.bags[node] = self._pardo(node, inputs[0])
            self.tagged.add(node)
            return
        if isinstance(node.transform, _Create):
            self.bags[node] = self._create(node.transform.values)
            return
        if isinstance(node.transform, _GroupByKeyOnly):
            self.bags[node] = self._group_by_key(inputs[0])
            return
        op = TRANSLATIONS.get(node.transform.__class__, NoOp)(node, bag_kwargs=self.bag_kwargs)
        if isinstance(op, Flatten):
            self.bags[node] = op.apply(inputs)
        else:
            self.bags[node] = op.apply(inputs[0] if inputs else None)

    def _pardo(self, node: AppliedPTransform, input_bag: Any) -> Any:
        transform = node.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(node.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        specs, values = [], []
        for si in node.side_inputs:
            specs.append(_SideInputSpec(type(si), si._view_options(), si._window_mapping_fn))
            # One dask Item per side input: the scheduler computes it once, before this
            # step, and hands every partition the whole list (fix 4).
            values.append(self.bag_of(si.pvalue).reduction(list, _concat))
        return input_bag.map(get_windowed_value, window_fn).map_partitions(
            _run_bundle, transform.fn, window_fn, transform.label, list(args), dict(kwargs), specs, *values)

    def _create(self, values: Iterable[Any]) -> Any:
        """Upstream's partitioning, under a name of this run's own (fix 7).

        Dask names tasks by their content, so two runs of one pipeline on a long-lived
        cluster would share task names, and the second could be handed results the
        first one's client still holds (stale, if the input files changed). Every other
        task name derives from these roots, so unique roots make each run's graph its own.
        """
        import dask.bag as db

        items = list(values)
        npartitions = self.bag_kwargs.get("npartitions")
        size = self.bag_kwargs.get("partition_size")
        if npartitions:
            size = max(1, math.ceil(len(items) / npartitions))
        elif not size:
            size = max(128, math.ceil(math.sqrt(len(items)) / 10))
        parts = [items[i:i + size] for i in range(0, len(items), size)] or [[]]
        name = f"beam-create-{uuid.uuid4().hex}"
        return db.Bag({(name, i): part for i, part in enumerate(parts)}, name, len(parts))

    def _group_by_key(self, input_bag: Any) -> Any:
        """As upstream, but spread over ``--dask_npartitions`` partitions (fix 5).

        Dask's task shuffle keeps the input's partition count, and a pipeline that
        starts from one ``Create`` (every file-based read) has one partition: without
        this, everything after the shuffle would still run as one task chain.
        """
        npartitions = self.bag_kwargs.get("npartitions")
        if npartitions and npartitions > input_bag.npartitions:
            input_bag = input_bag.repartition(npartitions)
        return input_bag.groupby(_key).map(_grouped)

    def leaves(self) -> list[Any]:
        """Every bag nothing else reads: the pipeline's sinks and dead ends (fix 3)."""
        return [bag for node, bag in self.bags.items() if node not in self.consumed]


@dataclasses.dataclass
class DaskRunnerResult(upstream.DaskRunnerResult):
    """Upstream's result, but a cancelled computation fails (fix 6), and the client is
    closed once the pipeline has finished."""

    def wait_until_finish(self, duration: int | None = None) -> str:
        import dask.distributed as ddist

        timeout = duration / 1000 if duration is not None else None
        try:
            for future, result in ddist.as_completed(self.futures, timeout=timeout, with_results=True):
                # Errors raise here; a cancelled future (lost data, a closed client) is
                # yielded with its CancelledError, which upstream counts as success.
                if future.status != "finished":
                    raise RuntimeError(f"Dask did not finish {future.key}: {result}")
        except ddist.TimeoutError:
            raise  # still running: the caller may wait again
        except BaseException:
            self._state = PipelineState.FAILED
            self.client.close()
            raise
        self._state = PipelineState.DONE
        self.client.close()
        return self._state


class DaskRunner(upstream.DaskRunner):
    """Executes a pipeline on a Dask distributed cluster (see the module docstring)."""

    def run_pipeline(self, pipeline: Any, options: Any) -> DaskRunnerResult:
        import dask.distributed as ddist

        dask_options = options.view_as(upstream.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = upstream.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        pipeline.replace_all(dask_overrides())
        translator = _Translator(bag_kwargs)
        pipeline.visit(translator)
        futures = client.compute(translator.leaves())
        return DaskRunnerResult(client, futures)
