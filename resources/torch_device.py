
import dagster as dg


class TorchDevice(dg.ConfigurableResource):
    """Which device PyTorch runs on. `auto` picks CUDA when present, else CPU."""

    device: str = "auto"
    cpu_threads: int | None = None

    def resolve(self) -> str:
        import torch

        if self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise dg.Failure(f"TorchDevice is configured as {self.device!r} but CUDA is not available here")
        return self.device
