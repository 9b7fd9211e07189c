"""sources.yaml is validated at load time, with messages naming the file and the key."""

import pytest

from mlops_assets.settings import SettingsError, load_settings
from mlops_assets_tests.conftest import edit_sources


def test_loads_the_generated_sample(small_data_dir):
    settings = load_settings(small_data_dir)
    assert settings.transactions.columns["customer_id"] == "customer"
    assert settings.window.start_date.isoformat() == "2023-01-01"
    assert settings.files("transactions")[0].name == "transactions.csv.gz"
    assert settings.warehouse_path == small_data_dir / "warehouse.duckdb"


def test_missing_required_mapping_names_file_and_key(small_data_dir):
    edit_sources(small_data_dir, lambda s: s["transactions"]["columns"].pop("order_ts"))
    with pytest.raises(
        SettingsError, match=r"sources\.yaml: transactions\.columns: missing required mapping for 'order_ts'"
    ):
        load_settings(small_data_dir)


def test_price_or_amount_is_required(small_data_dir):
    edit_sources(small_data_dir, lambda s: s["transactions"]["columns"].pop("unit_price"))
    with pytest.raises(SettingsError, match="'unit_price' or 'amount'"):
        load_settings(small_data_dir)


def test_unknown_canonical_name(small_data_dir):
    edit_sources(small_data_dir, lambda s: s["transactions"]["columns"].update(custmer_id="customer"))
    with pytest.raises(SettingsError, match=r"transactions\.columns\.custmer_id: unknown canonical name"):
        load_settings(small_data_dir)


def test_missing_file(small_data_dir):
    edit_sources(small_data_dir, lambda s: s["products"].update(path="raw/nope.csv"))
    with pytest.raises(
        SettingsError, match=r"sources\.yaml: products\.path: no file matches 'raw/nope\.csv'"
    ):
        load_settings(small_data_dir)


def test_bad_types_name_the_key(small_data_dir):
    edit_sources(small_data_dir, lambda s: s["window"].update(start_date="first of may"))
    with pytest.raises(SettingsError, match=r"sources\.yaml: window\.start_date"):
        load_settings(small_data_dir)


def test_missing_sources_file(tmp_path):
    with pytest.raises(SettingsError, match="sources.yaml: file not found"):
        load_settings(tmp_path)


def test_an_edited_sources_file_is_read_again_and_features_validated(small_data_dir):
    assert load_settings(small_data_dir).features.snapshot_freq == "W-MON"
    edit_sources(small_data_dir, lambda s: s.update(features={"snapshot_freq": "MS"}))
    assert load_settings(small_data_dir).features.snapshot_freq == "MS"
    edit_sources(small_data_dir, lambda s: s.update(features={"snapshot_freq": "fortnightly"}))
    with pytest.raises(
        SettingsError, match="features.snapshot_freq: .*not a pandas frequency: 'fortnightly'"
    ):
        load_settings(small_data_dir)


def test_segment_and_anomaly_settings_are_validated(small_data_dir):
    edit_sources(small_data_dir, lambda s: s.update(segment={"k_min": 6, "k_max": 4}))
    with pytest.raises(SettingsError, match=r"sources\.yaml: segment: .*k_max \(4\) is below k_min \(6\)"):
        load_settings(small_data_dir)
    edit_sources(small_data_dir, lambda s: s.update(segment={"algorithms": ["kmeans", "hdbscan"]}))
    with pytest.raises(SettingsError, match=r"segment\.algorithms\.1"):
        load_settings(small_data_dir)
    edit_sources(small_data_dir, lambda s: s.update(segment={}, anomaly={"min_abs_z": 0}))
    with pytest.raises(SettingsError, match=r"anomaly\.min_abs_z"):
        load_settings(small_data_dir)
