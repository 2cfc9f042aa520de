–SystemdCgroup = false
