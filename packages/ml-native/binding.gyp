{
  "targets": [
    {
      "target_name": "tessera_native",
      "sources": ["src/kernels.cc"],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "include_dirs": ["<!@(pkg-config --cflags-only-I openblas | sed s/-I//g)"],
      "libraries": ["<!@(pkg-config --libs openblas)"]
    }
  ]
}
