"""One small factory that turns a pandera schema into a blocking asset check.

Gates run inside the asset that owns the data, before its outputs are handed to the IO
manager (write-audit-publish): a failing gate leaves the warehouse tables as they were and,
being blocking, stops everything downstream in the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pandera.pandas as pa

MAX_SENTENCES = 5
MAX_CASES_SHOWN = 20


@dataclass(frozen=True)
class Gate:
    name: str  # the property asserted, e.g. matches_source_schema
    asset: str
    description: str
    warns: bool = False  # a warning, never a block: declared non-blocking, fails at WARN severity
    remedy: str = ""  # what to change when it fails: ends the failed result's sentence

    @property
    def spec(self) -> dg.AssetCheckSpec:
        return dg.AssetCheckSpec(
            self.name, asset=self.asset, blocking=not self.warns, description=self.description
        )

    def result(
        self,
        passed: bool,
        description: str,
        metadata: dict | None = None,
        severity: dg.AssetCheckSeverity | None = None,
    ) -> dg.AssetCheckResult:
        """A blocking gate's failure is an ERROR and stops publication; a warning gate's is a WARN
        (shown as a warning in the UI, blocking nothing). A blocking gate never fails at WARN: the UI
        would show a failed "blocking" check that blocked nothing."""
        if severity is None:
            severity = dg.AssetCheckSeverity.WARN if self.warns else dg.AssetCheckSeverity.ERROR
        if severity == dg.AssetCheckSeverity.WARN and not self.warns and not passed:
            raise ValueError(f"{self.name} is a blocking gate: it fails at ERROR or passes, never warns")
        if not passed and self.remedy:
            description = f"{description.rstrip('. ')}. To change: {self.remedy}"
        return dg.AssetCheckResult(
            passed=bool(passed),  # numpy comparisons give np.bool_, which Dagster refuses
            asset_key=self.asset,
            check_name=self.name,
            severity=severity,
            description=description,
            metadata=metadata or {},
        )

    def validate_batches(self, schema: pa.DataFrameSchema, batches, where: str) -> dg.AssetCheckResult:
        """`validate` over a table too large for one frame, a batch at a time."""
        return _validate_batches(self, schema, batches, where)

    def validate(
        self, schema: pa.DataFrameSchema, frame: pd.DataFrame, where: str, file_columns: dict | None = None
    ) -> dg.AssetCheckResult:
        """Validate lazily; on failure say which column broke which rule, and show the cases.
        `file_columns` maps canonical names to the user's, to name both in the message."""
        try:
            schema.validate(frame, lazy=True, inplace=True)  # checks only: no copy of the frame
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
            sentences = describe_failures(cases, frame, where, file_columns or {})
            text = f"{self.name} failed on {where}: " + "; ".join(sentences[:MAX_SENTENCES])
            return self.result(
                False,
                text,
                {
                    "failed_rules": len(sentences),
                    "failure_cases": dg.MetadataValue.md(
                        cases.head(MAX_CASES_SHOWN).astype(str).to_markdown(index=False)
                    ),
                    "failure_case_count": len(cases),
                },
            )
        return self.result(
            True, f"{self.name} passed on {where} ({len(frame):,} rows)", {"rows_checked": len(frame)}
        )


def _validate_batches(gate, schema, batches, where: str) -> dg.AssetCheckResult:
    rows = 0
    for frame in batches:
        result = gate.validate(schema, frame, where)
        if not result.passed:
            return result  # the first batch that breaks a rule names the rule and its cases
        rows += len(frame)
    return gate.result(True, f"{gate.name} passed on {where} ({rows:,} rows)", {"rows_checked": rows})


def blocks(result: dg.AssetCheckResult) -> bool:
    """Whether a check result stops publication: failed at ERROR severity."""
    return not result.passed and result.severity == dg.AssetCheckSeverity.ERROR


def describe_failures(cases: pd.DataFrame, frame: pd.DataFrame, where: str, file_columns: dict) -> list[str]:
    """One sentence per (column, rule), naming both."""
    out = []
    for (context, column, check), group in cases.groupby(
        ["schema_context", "column", "check"], dropna=False, sort=False
    ):
        if check == "column_in_dataframe":
            for missing in group["failure_case"]:
                user = (
                    f" (mapped from file column '{file_columns[missing]}')" if missing in file_columns else ""
                )
                out.append(f"column '{missing}'{user} is missing from {where} (rule: column_in_dataframe)")
            continue
        label = column if context == "Column" else f"table {column}"
        examples = ", ".join(repr(v) for v in group["failure_case"].drop_duplicates().head(3))
        if group["index"].isna().all():  # a whole-column check such as a null-rate ceiling
            detail = _column_fact(frame, column)
            out.append(f"column '{label}' breaks rule {check}{detail}")
        else:
            out.append(
                f"column '{label}' breaks rule {check} in {len(group):,} of {len(frame):,} rows "
                f"(e.g. {examples})"
            )
    return out


def _column_fact(frame: pd.DataFrame, column: str) -> str:
    if column in frame.columns:
        return f" (null share {frame[column].isna().mean():.1%})"
    return ""
