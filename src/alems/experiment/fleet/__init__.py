"""A batch spread over several machines on Ray (`alems batch --ray-address ADDR`).

`driver.Fleet` runs in the `alems batch` process: it places one actor (`node.NodeWorker`) on
each node that offers the custom resource `alems_slot`, hands each a whole pair at a time,
and alone writes the SQLite index and the Parquet samples, exactly as a local batch does.
Ray is imported only here, and only when a batch asks for a cluster.
"""

from alems.experiment.fleet.driver import SLOT, Fleet, node_label

__all__ = ["Fleet", "SLOT", "node_label"]
