{
  "variables": {
    "tessera_dnnl%": "<!(grep -qs '^#define DNNL_VERSION_MAJOR 2$' /usr/include/oneapi/dnnl/dnnl_version.h && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "tessera_native",
      "sources": ["src/kernels.cc", "src/training.cc", "src/layers.cc"],
      "cflags_cc": ["-O3", "-std=c++17"],
      "cflags_cc!": ["-fno-rtti", "-fno-exceptions"],
      "include_dirs": ["<!@(pkg-config --cflags-only-I openblas | sed s/-I//g)"],
      "libraries": ["<!@(pkg-config --libs openblas)"],
      "conditions": [
        [
          "tessera_dnnl==1",
          {
            "defines": ["TESSERA_DNNL"],
            "libraries": ["-ldnnl", "-lgomp"]
          }
        ]
      ]
    }
  ]
}
