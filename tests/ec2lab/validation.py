"""AWS's rules for a volume's size, type, IOPS and throughput (CreateVolume and ModifyVolume), with AWS's codes."""

from __future__ import annotations

from dataclasses import dataclass

from tests.ec2lab.xmlout import Ec2Error


@dataclass(frozen=True)
class TypeRules:
    min_size: int
    max_size: int
    iops: tuple[int, int] | None  # allowed range, None when the type takes no Iops
    iops_per_gib: int = 0
    iops_required: bool = False
    default_iops: int | None = None
    throughput: tuple[int, int] | None = None  # MiB/s, gp3 only
    default_throughput: int | None = None


RULES = {
    "gp2": TypeRules(1, 16384, None),
    "gp3": TypeRules(1, 16384, (3000, 16000), 500, default_iops=3000, throughput=(125, 1000), default_throughput=125),
    "io1": TypeRules(4, 16384, (100, 64000), 50, iops_required=True),
    "io2": TypeRules(4, 65536, (100, 256000), 1000, iops_required=True),
    "st1": TypeRules(125, 16384, None),
    "sc1": TypeRules(125, 16384, None),
    "standard": TypeRules(1, 1024, None),
}


def check_volume(vtype: str, size: int, iops: int | None, throughput: int | None) -> tuple[int | None, int | None]:
    """Raise AWS's error for a bad combination; return the (iops, throughput) the volume gets."""
    rules = RULES.get(vtype)
    if rules is None:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({vtype}) for parameter volumeType is invalid. Valid values are: {', '.join(RULES)}.",
        )
    if size < rules.min_size:
        raise Ec2Error("InvalidParameterValue", f"Volume of size {size}GB is too small; minimum is {rules.min_size}GB.")
    if size > rules.max_size:
        raise Ec2Error("InvalidParameterValue", f"Volume of size {size}GB is too large; maximum is {rules.max_size}GB.")
    if rules.iops is None and iops is not None:
        raise Ec2Error("InvalidParameterCombination", f"The parameter iops is not supported for {vtype} volumes.")
    if rules.throughput is None and throughput is not None:
        raise Ec2Error("InvalidParameterCombination", f"The parameter throughput is not supported for {vtype} volumes.")
    if rules.iops_required and iops is None:
        raise Ec2Error("MissingParameter", f"The request must contain the parameter iops for {vtype} volumes.")
    if rules.iops is not None:
        iops = rules.default_iops if iops is None else iops
        assert iops is not None
        low, high = rules.iops
        if iops < low:
            raise Ec2Error("InvalidParameterValue", f"Volume iops of {iops} is too low; minimum is {low}.")
        if iops > high:
            raise Ec2Error("InvalidParameterValue", f"Volume iops of {iops} is too high; maximum is {high}.")
        if iops > max(low, size * rules.iops_per_gib):
            raise Ec2Error(
                "InvalidParameterValue",
                f"Iops to volume size ratio of {iops / size:.1f} is too high; maximum is {rules.iops_per_gib}.",
            )
    if rules.throughput is not None:
        throughput = rules.default_throughput if throughput is None else throughput
        assert throughput is not None and iops is not None
        low, high = rules.throughput
        if not low <= throughput <= high:
            raise Ec2Error(
                "InvalidParameterValue", f"Throughput of {throughput} MiB/s is out of range; it must be {low} to {high} MiB/s."
            )
        if throughput > iops / 4:
            raise Ec2Error(
                "InvalidParameterValue",
                f"Throughput ({throughput} MiB/s) to iops ({iops}) ratio of {throughput / iops:.3f} is too high; "
                "maximum is 0.25 MiB/s per iops.",
            )
    return iops, throughput
