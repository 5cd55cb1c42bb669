"""What a `docker volume create -o ...` may ask of an EBS volume, checked before any AWS call.

The limits are AWS's (EBS volume types, as documented for gp2, gp3, io1, io2,
st1 and sc1); an error names the option, the value and what is valid, so a
user never waits for a CreateVolume that AWS would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import InvalidInput
from app.storage.option_values import GIB, parse_bool
from app.units import parse_size

__all__ = ["GIB", "TYPES", "VolumeRequest", "default_size_option", "parse_bool", "size_in_gib", "volume_request"]
TYPES = ("gp3", "gp2", "io1", "io2", "st1", "sc1")


@dataclass(frozen=True)
class TypeLimits:
    min_gib: int
    max_gib: int
    iops: tuple[int, int] | None  # allowed range of `iops`; None: the type takes none
    iops_required: bool = False
    throughput: tuple[int, int] | None = None  # MiB/s; only gp3 takes one
    iops_per_gib: int | None = None  # the most IOPS AWS provisions per GiB of the volume


LIMITS = {
    "gp3": TypeLimits(1, 16384, (3000, 80000), throughput=(125, 2000), iops_per_gib=500),
    "gp2": TypeLimits(1, 16384, None),
    "io1": TypeLimits(4, 16384, (100, 64000), iops_required=True, iops_per_gib=50),
    "io2": TypeLimits(4, 65536, (100, 256000), iops_required=True, iops_per_gib=1000),
    "st1": TypeLimits(125, 16384, None),
    "sc1": TypeLimits(125, 16384, None),
}


@dataclass(frozen=True)
class VolumeRequest:
    """A validated CreateVolume: sizes in GiB, as EBS counts them."""

    size_gib: int
    volume_type: str
    iops: int | None
    throughput: int | None
    encrypted: bool
    kms_key_id: str | None
    availability_zone: str


def _int(value: str, option: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{option}={value!r} is not a whole number") from None


def size_in_gib(size: int) -> int:
    """EBS sizes are whole GiB: a size in bytes rounded up."""
    return max(1, -(-size // GIB))


def volume_request(
    options: dict[str, str],
    size: int | None,
    *,
    default_size: int,
    default_type: str,
    encrypted_by_default: bool,
    default_kms_key: str | None,
    availability_zone: str,
) -> VolumeRequest:
    """The CreateVolume a volume's options ask for, or InvalidInput naming what is wrong."""
    volume_type = (options.get("type") or default_type).strip().lower()
    limits = LIMITS.get(volume_type)
    if limits is None:
        raise InvalidInput(f"type={volume_type!r} is not an EBS volume type: use one of {', '.join(TYPES)}")
    size_gib = size_in_gib(size if size is not None else default_size)
    if not limits.min_gib <= size_gib <= limits.max_gib:
        raise InvalidInput(
            f"size {size_gib}G is outside what a {volume_type} volume can be: "
            f"give {limits.min_gib}G to {limits.max_gib}G"
        )
    iops = _int(options["iops"], "iops") if options.get("iops") else None
    if iops is not None and limits.iops is None:
        raise InvalidInput(f"iops is not settable on a {volume_type} volume: use gp3, io1 or io2 for it")
    if limits.iops is not None:
        low, high = limits.iops
        if iops is None and limits.iops_required:
            raise InvalidInput(f"a {volume_type} volume needs iops: add -o iops=N ({low}-{high})")
        if iops is not None and not low <= iops <= high:
            raise InvalidInput(f"iops={iops} is outside {low}-{high} for a {volume_type} volume")
        ratio = limits.iops_per_gib
        if iops is not None and ratio and iops > ratio * size_gib and iops > low:
            raise InvalidInput(
                f"iops={iops} is more than a {size_gib}G {volume_type} volume can have ({ratio} per GiB): "
                f"give at most {max(low, ratio * size_gib)} or a size of at least {-(-iops // ratio)}G"
            )
    throughput = _int(options["throughput"], "throughput") if options.get("throughput") else None
    if throughput is not None:
        if limits.throughput is None:
            raise InvalidInput(f"throughput is only settable on gp3 volumes, not {volume_type}")
        if not limits.throughput[0] <= throughput <= limits.throughput[1]:
            raise InvalidInput(
                f"throughput={throughput} MiB/s is outside {limits.throughput[0]}-{limits.throughput[1]} for gp3"
            )
    encrypted = parse_bool(options["encrypted"], "encrypted") if "encrypted" in options else encrypted_by_default
    kms_key_id = options.get("kms_key_id") or default_kms_key
    if kms_key_id and not encrypted:
        raise InvalidInput("kms_key_id is given but encrypted=false: a KMS key only applies to an encrypted volume")
    return VolumeRequest(
        size_gib=size_gib,
        volume_type=volume_type,
        iops=iops,
        throughput=throughput,
        encrypted=encrypted,
        kms_key_id=kms_key_id or None,
        availability_zone=options.get("az") or availability_zone,
    )


def default_size_option(value: str | None) -> int:
    return parse_size(value) if value else 100 * GIB
