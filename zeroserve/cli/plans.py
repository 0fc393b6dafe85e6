"""``zeroserve plans``: the resource plans a deployment may run on (``--plan``, the ``resourcePlan``
parameter), read through SAP's ``GET /v2/admin/resources/instanceTypes``.
"""

from __future__ import annotations

from rich.table import Table

from zeroserve.cli.options import client_for
from zeroserve.cli.output import Format, OutputOption, failures, printed


def plans(output: OutputOption = Format.table) -> None:
    """List the resource plans: CPU, memory and GPUs each gives (--plan NAME picks one)."""
    with failures(), client_for(None) as zs:
        found = zs.instance_types()
    table = Table("NAME", "CPU", "MEMORY", "GPUS", "GPU TYPE", box=None, header_style="bold", pad_edge=False)
    for name, plan in found.items():
        table.add_row(name, f"{plan.get('cpu', 0):g}", str(plan.get("memory", "")), f"{plan.get('gpu', 0):g}",
                      str(plan.get("gpuType") or ""))
    printed(found, table, output)
