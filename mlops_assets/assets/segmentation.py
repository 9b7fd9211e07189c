"""Segmentation: a customer segmenter chosen by silhouette among k-means and DBSCAN, published
only through its gates (quality, segment sizes, stability), and every customer scored with
the registry's champion."""

import json

import dagster as dg
import pandas as pd

from mlops_assets.assets._governance import TRACKED, champion_output, first_or, govern, not_registered
from mlops_assets.assets._metadata import frame_metadata, model_selected, only_selected, table_metadata
from mlops_assets.assets.partitions import SINGLE_RUN
from mlops_assets.automation.freshness import model_freshness
from mlops_assets.automation.jobs import TRAINING_CONDITION
from mlops_assets.checks.gates import Gate
from mlops_assets.core.cluster_quality import NOISE
from mlops_assets.core.monitoring import feature_columns
from mlops_assets.core.plots import k_sweep_md, png_of
from mlops_assets.core.promotion import Decision, compare_segmenters
from mlops_assets.core.segmentation import Segmenter, SegmentSpec, fit_segmenter, silhouette_on
from mlops_assets.resources.models import Champion
from mlops_assets.settings import SegmentSettings, Settings

GROUP = "segmentation"
MODEL = "customer_segmenter"
GATES = {
    "silhouette": Gate(
        "silhouette_above_minimum",
        MODEL,
        "Silhouette of the chosen segmentation (scaled feature space, non-noise points) is at least "
        "segment.min_silhouette.",
        remedy="choose other segment.features, segment.k_min or k_max, or lower segment.min_silhouette",
    ),
    "sizes": Gate(
        "no_tiny_segments",
        MODEL,
        "Every segment holds at least segment.min_segment_share of the customers.",
        remedy="lower segment.min_segment_share or lower segment.k_max",
    ),
    "stable": Gate(
        "segments_stable_under_resampling",
        MODEL,
        "Mean adjusted Rand index between the chosen fit and its bootstrap refits is at least "
        "segment.min_stability_ari.",
        remedy="lower segment.k_max (fewer segments hold better on a small base), "
        "or lower segment.min_stability_ari",
    ),
}


def spec(s: SegmentSettings) -> SegmentSpec:
    return SegmentSpec(
        features=tuple(s.features),
        k_min=s.k_min,
        k_max=s.k_max,
        silhouette_tolerance=s.silhouette_tolerance,
        min_segment_share=s.min_segment_share,
        algorithms=tuple(s.algorithms),
        n_init=s.n_init,
        sample_size=s.sample_size,
        silhouette_sample=s.silhouette_sample,
        resamples=s.resamples,
        max_noise_share=s.max_noise_share,
        min_stability_ari=s.min_stability_ari,
        seed=s.seed,
    )


def gate_results(segmenter: Segmenter, s: SegmentSettings) -> list[dg.AssetCheckResult]:
    m = segmenter.metrics
    setting = f"{segmenter.algorithm} with {segmenter.params['k']} segments"
    sil_ok = m["silhouette"] >= s.min_silhouette
    smallest = segmenter.profile[segmenter.profile["segment_id"] != NOISE].nsmallest(1, "share").iloc[0]
    size_ok = smallest["share"] >= s.min_segment_share
    ari_ok = m["stability_ari"] >= s.min_stability_ari
    # a rejected candidate is shown beside the verdict: it is published nowhere else
    candidate = {
        "candidate_segments": table_metadata(segmenter.profile.round(3), 30),
        "choice": segmenter.reason,
    }
    return [
        GATES["silhouette"].result(
            sil_ok,
            f"silhouette {m['silhouette']:.3f} of {setting} is "
            + ("at least" if sil_ok else "below")
            + f" segment.min_silhouette {s.min_silhouette:g}",
            {"silhouette": m["silhouette"], **({} if sil_ok else candidate)},
        ),
        GATES["sizes"].result(
            size_ok,
            f"smallest segment '{smallest['segment_name']}' holds {smallest['share']:.2%} of customers "
            + ("(at least" if size_ok else "(below")
            + f" segment.min_segment_share {s.min_segment_share:.0%})",
            {"smallest_segment_share": float(smallest["share"]), **({} if size_ok else candidate)},
        ),
        GATES["stable"].result(
            ari_ok,
            f"mean bootstrap ARI {m['stability_ari']:.3f} of {setting} over {s.resamples} bootstrap "
            f"refits is at least segment.min_stability_ari {s.min_stability_ari:g}"
            if ari_ok
            else f"no candidate segmentation (k-means k={s.k_min}..{s.k_max}"
            + (", DBSCAN" if "dbscan" in s.algorithms else "")
            + f") is stable under resampling: the most stable, {setting}, has mean bootstrap ARI "
            f"{m['stability_ari']:.3f} over {s.resamples} refits, below segment.min_stability_ari "
            f"{s.min_stability_ari:g}",
            {
                "stability_ari": m["stability_ari"],
                "stability_ari_min": m["stability_ari_min"],
                **({} if ari_ok else candidate),
            },
        ),
    ]


def _compare(
    context, champion_version, challenger: Segmenter, features: pd.DataFrame, s: Settings
) -> Decision:
    """The champion's silhouette re-measured on the current customers (the challenger's were
    measured on them), and its recorded stability, against the challenger's."""
    champion, _ = context.resources.registry.load(MODEL, version=champion_version.version)
    current = {
        "silhouette": silhouette_on(champion, features, spec(s.segment)),
        "stability_ari": champion.metrics["stability_ari"],
    }
    return compare_segmenters(current, challenger.metrics, s.registry.segment_tolerance)


def _floats(segmenter: Segmenter) -> dict:
    keys = ("silhouette", "davies_bouldin", "calinski_harabasz", "stability_ari", "smallest_segment_share")
    return {k: float(segmenter.metrics[k]) for k in keys} | {"segments": int(segmenter.metrics["segments"])}


def build_segmentation_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    s = settings.segment

    @dg.multi_asset(
        outs={
            MODEL: dg.AssetOut(
                group_name=GROUP,
                kinds={"sklearn"},
                io_manager_key="model_io_manager",
                is_required=False,  # published only when the gates pass
                description="The fitted scikit-learn Pipeline (impute, log of skewed features, robust "
                "scaling, clusterer) with its segment ids and names, under models/customer_segmenter/.",
                automation_condition=TRAINING_CONDITION,
                freshness_policy=model_freshness(settings),
            ),
            "segmentation_report": dg.AssetOut(
                group_name=GROUP,
                kinds={"pandas", "duckdb"},
                metadata={"schema": GROUP},
                is_required=False,
                description="Per segment: size, share, revenue share and mean features; quality "
                "metrics and the k sweep in metadata.",
                automation_condition=TRAINING_CONDITION,
            ),
        },
        check_specs=[g.spec for g in GATES.values()],
        can_subset=True,
        backfill_policy=SINGLE_RUN,
        code_version="1",
        **TRACKED,
    )
    def train_customer_segmenter(context: dg.AssetExecutionContext, customer_features: pd.DataFrame):
        segmenter = fit_segmenter(customer_features, spec(s))
        checks = gate_results(segmenter, s)
        failed = [c for c in checks if not c.passed]
        for c in failed:
            context.log.error(c.description)
        if failed:
            if model_selected(context, MODEL):
                not_registered(context, MODEL, failed)
        else:  # registered as challenger; champion only if it holds up against the current one
            floats = _floats(segmenter)
            governance = (
                {}
                if not model_selected(context, MODEL)
                else govern(
                    context,
                    MODEL,
                    segmenter,
                    first_or(
                        lambda champion: _compare(context, champion, segmenter, customer_features, settings)
                    ),
                    params={**segmenter.params, "features": segmenter.features, "choice": segmenter.reason},
                    metrics=floats,
                    data=customer_features,
                    artifacts={
                        "segmentation_report.csv": segmenter.profile,
                        "k_sweep.csv": segmenter.sweep,
                        "k_sweep.png": png_of(k_sweep_md(segmenter.sweep)),
                    },
                    sklearn_model=segmenter.pipeline,
                    # the pipeline scores the feature columns as floats (segmenter.segment_ids)
                    example=customer_features[segmenter.features].head(5).astype(float),
                    reference={"customer_features": feature_columns(customer_features)},
                )
            )
            yield from only_selected(context, _published(segmenter, floats, governance))
        yield from only_selected(context, checks)

    @dg.asset(**champion_output(GROUP))
    def customer_segments(customer_features: pd.DataFrame, customer_segmenter: Champion) -> dg.Output:
        """Every customer's segment id and name, scored with the registry's champion segmenter
        (not whatever trained last) through the preprocessing it was trained with."""
        champion = customer_segmenter.model
        table = champion.assign(customer_features)
        table["model_version"] = pd.Series(customer_segmenter.number, index=table.index, dtype="string")
        counts = table.groupby(["segment_id", "segment_name"]).size().rename("customers").reset_index()
        counts["share"] = counts["customers"] / max(len(table), 1)
        return dg.Output(
            table,
            metadata={
                "rows": len(table),
                "segment_counts": table_metadata(counts.round(4), 30),
                "model_version": customer_segmenter.number,
                "model_uri": customer_segmenter.uri,
                "model_trained_at": champion.trained_at,
                **frame_metadata(table),
            },
        )

    return [train_customer_segmenter, customer_segments]


def _published(segmenter, floats: dict, governance: dict):
    """The segmenter and its report, as outputs."""
    yield dg.Output(
        segmenter,
        output_name=MODEL,
        metadata={
            "algorithm": segmenter.algorithm,
            "params": json.dumps(segmenter.params),
            "choice": segmenter.reason,
            "segment_names": json.dumps({str(k): v for k, v in segmenter.names.items()}),
            "trained_rows": segmenter.trained_rows,
            **floats,
            **governance,
        },
    )
    yield dg.Output(
        segmenter.profile,
        output_name="segmentation_report",
        metadata={
            "segments": table_metadata(segmenter.profile.round(3), 30),
            "k_sweep": table_metadata(segmenter.sweep.round(4), 30),
            "k_sweep_plot": dg.MetadataValue.md(k_sweep_md(segmenter.sweep)),
            "choice": segmenter.reason,
            **floats,
        },
    )
