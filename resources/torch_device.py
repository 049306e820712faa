
import dagster as dg


class TorchDevice(dg.ConfigurableResource):
    """Which device PyTorch runs on. `auto` picks CUDA when present, else CPU."""

    device: str = "auto"
    # PyTorch intra-op threads on CPU (None: PyTorch's default, one per core). One by default: our nets are
    # small, and a second thread that must meet the first at every op collapses when another process holds a
    # core. `make demo` on 2 shared cores trained the default GAN at 1.7-2.7 steps/s with two threads against
    # 69 with one (its warm-up had measured 70-77), and the gate failed on a generator that had hardly trained;
    # alone on the machine two threads give ~1.4x. The benchmarks' figures are taken with one thread too.
    cpu_threads: int | None = 1

    def resolve(self) -> str:
        import torch

        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise dg.Failure(f"TorchDevice is configured as {self.device!r} but CUDA is not available here")
        return self.device
