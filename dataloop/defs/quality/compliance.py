"""Compliance: anonymised frames and geofenced GNSS for every approved drive; retention."""

import os
from collections import Counter

import dagster as dg

from dataloop.defs.ingest.partitions import arrival_hours
from dataloop.defs.quality import assets as quality
from dataloop.defs.resources import LakeResource
from dataloop.defs.rules import rules_or_fail
from dataloop.defs.set_aside import set_aside_metadata
from dataloop.lake.hashing import sha256_json
from dataloop.quality.compliance import comply_hour
from dataloop.quality.geofence import load_zones
from dataloop.quality.retention import load_retention, sweep
from dataloop.quality.suites import rules_hash
from dataloop.rules import rules_dir, snapshot

ANONYMISER = os.environ.get("DATALOOP_ANONYMISER", "haar")
COMPLIANCE_VERSION = "2"
"""2: a count per camera, the sensors of gnss_public, the cameras named anew."""
_RULES = rules_dir() / "quality"
RULES_HASH = rules_hash(_RULES / "geofence.yaml")
GEOFENCE = snapshot(_RULES / "geofence.yaml", load_zones)
RETENTION = snapshot(_RULES / "retention.yaml", load_retention)


@dg.asset(
    partitions_def=arrival_hours,
    # Through the module, not a name of ours: the defs folder loads every asset it finds in
    # a module's namespace, so a re-exported one would count twice once its module reloads.
    deps=[quality.approved_drives],
    group_name="quality",
    code_version=GEOFENCE.version(
        lambda _: f"compliance-{COMPLIANCE_VERSION}.{ANONYMISER}.geofence-{RULES_HASH}"
    ),
    kinds={"python", "opencv"},
    tags={"dataloop/stage": "quality"},
    pool="anonymise",
)
def compliant_drives(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The approved drives with faces and licence plates blurred in every frame and GNSS
    coarsened inside geofences (or the drive excluded). Downstream reads only these."""
    from dataloop.quality.anonymise import load_detector

    zones = rules_or_fail(GEOFENCE)
    detector = load_detector(ANONYMISER)
    version = f"{COMPLIANCE_VERSION}.{detector.name}-{detector.version}.{RULES_HASH}"
    results = comply_hour(
        lake.store(),
        context.partition_key,
        detector,
        zones,
        version,
    )
    usable = [r for r in results if not r["excluded"]]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            sha256_json(sorted((r["vehicle"], r["drive"], r.get("frame_pack")) for r in results))[
                :32
            ]
        ),
        metadata={
            "drives": dg.MetadataValue.int(len(usable)),
            "excluded_by_geofence": dg.MetadataValue.int(
                sum(bool(r.get("geofence", {}).get("excluded_by")) for r in results)
            ),
            **set_aside_metadata(
                (r["vehicle"], r["drive"], r["set_aside"]) for r in results if "set_aside" in r
            ),
            "frames": dg.MetadataValue.int(sum(r.get("frames", 0) for r in usable)),
            "faces_blurred": dg.MetadataValue.int(sum(r.get("faces_blurred", 0) for r in usable)),
            "plates_blurred": dg.MetadataValue.int(sum(r.get("plates_blurred", 0) for r in usable)),
            "gnss_points_coarsened": dg.MetadataValue.int(
                sum(r.get("geofence", {}).get("coarsened_points", 0) for r in results)
            ),
            "anonymiser": dg.MetadataValue.text(f"{detector.name} {detector.version}"),
            "per_camera": dg.MetadataValue.json(_per_camera(usable)),
        },
    )


def _per_camera(results: list[dict]) -> dict[str, dict[str, int]]:
    """The hour's frames, faces and plates blurred, per camera."""
    out: dict[str, Counter] = {}
    for r in results:
        for camera, counts in r.get("per_camera", {}).items():
            out.setdefault(camera, Counter()).update(counts)
    return {camera: dict(counts) for camera, counts in sorted(out.items())}


@dg.asset(
    group_name="quality",
    code_version=RETENTION.version(lambda _: f"retention-{rules_hash(_RULES / 'retention.yaml')}"),
    kinds={"python"},
    tags={"dataloop/stage": "quality"},
)
def retention_sweep(lake: LakeResource) -> dg.MaterializeResult:
    """Applies the retention policy per lake zone (assets/quality/retention.yaml)."""
    report = sweep(lake.store(), rules_or_fail(RETENTION))
    return dg.MaterializeResult(
        metadata={
            "deleted": dg.MetadataValue.int(sum(z["deleted"] for z in report.values())),
            "per_zone": dg.MetadataValue.json(report),
        }
    )


retention_schedule = dg.ScheduleDefinition(
    name="daily_retention",
    target=dg.AssetSelection.assets(retention_sweep),
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
