{
  "targets": [
    {
      "target_name": "accel",
      "sources": ["accel.c"],
      "cflags": ["-O3", "-Wall"]
    }
  ]
}
