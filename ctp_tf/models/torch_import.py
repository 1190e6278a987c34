def from_torch(state_dict, arch, layout="torchvision"):
  raise NotImplementedError("from_torch: in progress")
