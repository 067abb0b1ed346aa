"""ESS flatbuffers made with the reference package (ess-streaming-data-types), and the
check that what Arroyo wrote serialises the same, for the ESS parser's unit and
integration tests."""

from __future__ import annotations

import numpy as np
from streaming_data_types import (
    deserialise_6s4t,
    deserialise_ad00,
    deserialise_da00,
    deserialise_ev44,
    deserialise_f144,
    deserialise_pl72,
    serialise_6s4t,
    serialise_ad00,
    serialise_da00,
    serialise_ev44,
    serialise_f144,
    serialise_pl72,
)
from streaming_data_types.area_detector_ad00 import Attribute
from streaming_data_types.dataarray_da00 import Variable
from streaming_data_types.run_start_pl72 import DetectorSpectrumMap

IMAGE = (np.arange(12 * 10, dtype=np.uint16) * 3).reshape(12, 10)


def buffers() -> dict[str, bytes]:
    """One buffer of each schema the parser reads, as ESS software writes them."""
    return {
        "pl72": serialise_pl72(
            job_id="job-1",
            filename="run.nxs",
            start_time=1_700_000_000_000,
            stop_time=1_700_000_100_000,
            run_name="calibration",
            nexus_structure='{"children": []}',
            service_id="fw-1",
            instrument_name="LOKI",
            broker="kafka:9092",
            metadata='{"proposal": 42}',
            detector_spectrum_map=DetectorSpectrumMap(
                np.array([1, 2, 3], np.int32), np.array([10, 20, 30], np.int32), 3
            ),
            control_topic="loki_control",
        ),
        "ad00": serialise_ad00(
            "loki_camera",
            17,
            1_700_000_000_123_456_789,
            IMAGE,
            [
                Attribute("exposure", "exposure time", "camera", 0.25),
                Attribute("roi", "region", "camera", np.array([1, 2, 3, 4], np.int32)),
                Attribute("mode", "", "camera", "fast"),
            ],
        ),
        "da00": serialise_da00(
            "loki_monitor",
            1_700_000_000_500_000_000,
            [
                Variable(
                    name="signal",
                    data=np.arange(6, dtype=np.float64).reshape(2, 3),
                    axes=["x", "y"],
                    unit="counts",
                    label="intensity",
                    source="monitor",
                ),
                Variable(name="x", data=np.array([0.5, 1.5], np.float32), axes=["x"], unit="mm"),
            ],
        ),
        "ev44": serialise_ev44(
            "loki_detector",
            99,
            np.array([1_700_000_000_000_000_000, 1_700_000_000_071_000_000]),
            np.array([0, 3]),
            np.array([10, 20, 30, 40, 50], np.int32),
            np.array([1, 2, 3, 4, 5], np.int32),
        ),
        "f144": serialise_f144("loki:temperature", 293.15, 1_700_000_000_900_000_000),
        "6s4t": serialise_6s4t(
            job_id="job-1",
            run_name="calibration",
            service_id="fw-1",
            command_id="cmd-7",
            stop_time=1_700_000_100_000,
        ),
    }


def assert_same_as_serialised(original: dict[str, bytes], written: dict[str, bytes]) -> None:
    """Each written buffer deserialises (with the package) to what the original did."""
    for name, read in {
        "pl72": deserialise_pl72,
        "6s4t": deserialise_6s4t,
        "f144": deserialise_f144,
    }.items():
        a, b = read(original[name]), read(written[name])
        if name == "pl72":  # the spectrum map's arrays compare with numpy; the rest as is
            assert a._replace(detector_spectrum_map=None) == b._replace(detector_spectrum_map=None)
            x, y = a.detector_spectrum_map, b.detector_spectrum_map
            assert np.array_equal(x.spectrum_numbers, y.spectrum_numbers)
            assert np.array_equal(x.detector_ids, y.detector_ids) and x.n_spectra == y.n_spectra
            continue
        assert a == b, name
    a, b = deserialise_ad00(original["ad00"]), deserialise_ad00(written["ad00"])
    assert (a.source_name, a.unique_id, a.timestamp_ns) == (
        b.source_name,
        b.unique_id,
        b.timestamp_ns,
    )
    assert np.array_equal(a.data, b.data) and a.data.dtype == b.data.dtype
    assert a.attributes == b.attributes
    a, b = deserialise_da00(original["da00"]), deserialise_da00(written["da00"])
    assert a == b
    a, b = deserialise_ev44(original["ev44"]), deserialise_ev44(written["ev44"])
    assert (a.source_name, a.message_id) == (b.source_name, b.message_id)
    for field in ("reference_time", "reference_time_index", "time_of_flight", "pixel_id"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
