import { backend_util, type Conv2DAttrs } from '@tensorflow/tfjs-core';

export type Conv2DShape = [number, number, number, number];

/** The attrs every 2-D convolution kernel (forward and both gradients) carries. */
export type ConvGeometryAttrs = Pick<
  Conv2DAttrs,
  'strides' | 'pad' | 'dataFormat' | 'dimRoundingMode'
>;

/**
 * The geometry tfjs computes for a (not depthwise) 2-D convolution, from a kernel's attrs:
 * one place for the call that the cpu, wasm and OpenBLAS kernels all make.
 */
export function conv2DInfo(
  inShape: Conv2DShape,
  filterShape: Conv2DShape,
  attrs: ConvGeometryAttrs,
  dilations: number | [number, number] = 1,
): backend_util.Conv2DInfo {
  return backend_util.computeConv2DInfo(
    inShape,
    filterShape,
    attrs.strides,
    dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    backend_util.convertConv2DDataFormat(attrs.dataFormat),
  );
}
