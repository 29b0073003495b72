// Detect.cs - defectrt from C# through P/Invoke (defectrt.h, ABI 1.0).
//
// NOT COMPILED OR RUN IN THIS REPOSITORY'S CI (no .NET SDK there): the declarations below were written
// against src/defectrt/capi/defectrt.h and checked by tests/test_capi.py only for names, enum values and
// field order. Build and run on the line PC:
//     dotnet run -c Release -- model.onnx part.ppm
// with defectrt.dll (Windows) / libdefectrt.so (Linux) next to the executable or on PATH /
// LD_LIBRARY_PATH (the .csproj copies it from DrtDir), and its Python installation present (see
// src/defectrt/capi/README.md).
//
// Marshalling rules used here (why it is written this way):
// - Every function is cdecl (CallingConvention.Cdecl) and returns DrtStatus (an int-sized enum).
// - Strings RETURNED by the library (drt_last_error, drt_class_name, drt_version) are library-owned:
//   they are declared as IntPtr and copied with Marshal.PtrToStringUTF8. Declaring them as `string`
//   would make the marshaller free library memory (CoTaskMemFree) and crash.
// - DrtOptions.Backend is an IntPtr, not a string field: drt_options_init writes a pointer to a static
//   "auto" into it, which a string field would try to free on the way back. Use SetBackend/FreeBackend.
// - DrtOptions and DrtDetection contain only blittable fields, so arrays of DrtDetection are pinned and
//   filled in place (no copy), and `ref DrtOptions` passes a pointer to the managed struct.
// - drt_last_error is per OS thread: read it right after the failing call, on the same thread (no
//   `await` in between).
//
// SPDX-License-Identifier: Apache-2.0
using System;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Defectrt
{
    /// <summary>drt_status (values are part of the ABI).</summary>
    public enum DrtStatus : int
    {
        Ok = 0,
        InvalidArgument = 1,
        NullPointer = 2,
        NotFound = 3,
        UnsupportedFormat = 4,
        CapacityTooSmall = 5,
        Runtime = 6,
        Python = 7,
        InitFailed = 8,
        Destroyed = 9,
        InvalidHandle = 10,
        OutOfMemory = 11,
    }

    /// <summary>drt_pixel_format: 8 bits per channel, interleaved.</summary>
    public enum DrtPixelFormat : int
    {
        Bgr = 0,   // Format24bppRgb in System.Drawing is BGR in memory
        Rgb = 1,
        Gray = 2,
        Bgra = 3,  // Format32bppArgb / Format32bppRgb in memory
        Rgba = 4,
    }

    /// <summary>drt_options (ABI 1.0 layout: 32 bytes on 64-bit, 24 on 32-bit).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct DrtOptions
    {
        public uint StructSize;  // set by drt_options_init
        public IntPtr Backend;   // const char* UTF-8: "auto" / "onnxruntime" / "tensorrt"
        public float Conf;       // negative = the model's default
        public float Iou;        // negative = the model's default
        public int MaxDet;       // 0 = the model's default
        public int Threads;      // 0 = ONNX Runtime's default
    }

    /// <summary>drt_detection: 24 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct DrtDetection
    {
        public float X1, Y1, X2, Y2;
        public float Score;
        public int ClassId;
    }

    /// <summary>The raw P/Invoke declarations, one per function in defectrt.h.</summary>
    public static class Native
    {
        // "defectrt" resolves to defectrt.dll on Windows and libdefectrt.so on Linux.
        const string Lib = "defectrt";

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern uint drt_abi_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr drt_version();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr drt_status_str(DrtStatus status);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr drt_last_error();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_options_init(ref DrtOptions opts);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_options_init_ex(ref DrtOptions opts, uint structSize);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_init();

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_detector_create(
            [MarshalAs(UnmanagedType.LPUTF8Str)] string modelPath, ref DrtOptions opts, out DetectorHandle detector);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_detect(
            DetectorHandle detector, IntPtr pixels, int width, int height, int strideBytes, DrtPixelFormat fmt,
            [In, Out] DrtDetection[] dets, int capacity, out int count);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_detect(
            DetectorHandle detector, byte[] pixels, int width, int height, int strideBytes, DrtPixelFormat fmt,
            [In, Out] DrtDetection[] dets, int capacity, out int count);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_num_classes(DetectorHandle detector, out int numClasses);

        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_class_name(DetectorHandle detector, int classId, out IntPtr name);

        // Takes the raw pointer: only DetectorHandle.ReleaseHandle calls it.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl)]
        public static extern DrtStatus drt_detector_destroy(IntPtr detector);

        public static string LastError() => Marshal.PtrToStringUTF8(drt_last_error()) ?? "";

        public static void SetBackend(ref DrtOptions opts, string backend) =>
            opts.Backend = Marshal.StringToCoTaskMemUTF8(backend);  // free with FreeBackend after create

        public static void FreeBackend(ref DrtOptions opts, IntPtr ours)
        {
            if (ours != IntPtr.Zero) Marshal.FreeCoTaskMem(ours);
            opts.Backend = IntPtr.Zero;
        }
    }

    /// <summary>Owns a drt_detector*; destroyed exactly once by the GC-safe SafeHandle machinery.</summary>
    public sealed class DetectorHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public DetectorHandle() : base(true) { }

        protected override bool ReleaseHandle()
        {
            DrtStatus s = Native.drt_detector_destroy(handle);
            return s == DrtStatus.Ok || s == DrtStatus.Destroyed;
        }
    }

    public class DefectrtException : Exception
    {
        public DrtStatus Status { get; }

        public DefectrtException(DrtStatus status, string message) : base(status + ": " + message) { Status = status; }
    }

    /// <summary>A small managed wrapper: one Detector per model; thread-safe (calls are serialised).</summary>
    public sealed class Detector : IDisposable
    {
        readonly DetectorHandle handle;
        readonly object gate = new object();
        DrtDetection[] buffer = new DrtDetection[64];

        public Detector(string modelPath, string backend = "auto", float conf = -1f, int threads = 0)
        {
            if ((Native.drt_abi_version() >> 16) != 1)
                throw new InvalidOperationException("defectrt library has ABI " + (Native.drt_abi_version() >> 16) + ".x, expected 1.x");
            var opts = new DrtOptions();
            Check(Native.drt_options_init(ref opts));
            opts.Conf = conf;
            opts.Threads = threads;
            Native.SetBackend(ref opts, backend);
            IntPtr ours = opts.Backend;
            try
            {
                Check(Native.drt_detector_create(modelPath, ref opts, out handle));
            }
            finally
            {
                Native.FreeBackend(ref opts, ours);
            }
        }

        public int NumClasses
        {
            get { Check(Native.drt_num_classes(handle, out int n)); return n; }
        }

        public string ClassName(int classId)
        {
            Check(Native.drt_class_name(handle, classId, out IntPtr name));
            return Marshal.PtrToStringUTF8(name);  // copied: the native string dies with the detector
        }

        /// <summary>Detect on a pixel buffer you own (e.g. Bitmap.LockBits: Scan0, Stride, Format24bppRgb = Bgr).</summary>
        public DrtDetection[] Detect(IntPtr pixels, int width, int height, int strideBytes, DrtPixelFormat fmt)
        {
            lock (gate)  // the managed buffer is shared; the native side serialises per handle anyway
            {
                DrtStatus s = Native.drt_detect(handle, pixels, width, height, strideBytes, fmt, buffer, buffer.Length, out int count);
                if (s == DrtStatus.CapacityTooSmall)
                {
                    buffer = new DrtDetection[count];  // count = how many were found
                    s = Native.drt_detect(handle, pixels, width, height, strideBytes, fmt, buffer, buffer.Length, out count);
                }
                Check(s);
                var result = new DrtDetection[count];
                Array.Copy(buffer, result, count);
                return result;
            }
        }

        public DrtDetection[] Detect(byte[] pixels, int width, int height, int strideBytes, DrtPixelFormat fmt)
        {
            var pin = GCHandle.Alloc(pixels, GCHandleType.Pinned);
            try { return Detect(pin.AddrOfPinnedObject(), width, height, strideBytes, fmt); }
            finally { pin.Free(); }
        }

        public void Dispose() => handle?.Dispose();

        static void Check(DrtStatus s)
        {
            if (s != DrtStatus.Ok) throw new DefectrtException(s, Native.LastError());
        }
    }

    public static class Program
    {
        // Binary PPM (P6) reader, as in examples/c/detect_image.c: RGB pixels, no image library needed.
        static byte[] ReadPpm(string path, out int width, out int height)
        {
            byte[] data = File.ReadAllBytes(path);
            int pos = 0;
            string Token()
            {
                while (pos < data.Length && (char.IsWhiteSpace((char)data[pos]) || data[pos] == '#'))
                {
                    if (data[pos] == '#') while (pos < data.Length && data[pos] != '\n') pos++;
                    else pos++;
                }
                int start = pos;
                while (pos < data.Length && !char.IsWhiteSpace((char)data[pos])) pos++;
                return System.Text.Encoding.ASCII.GetString(data, start, pos - start);
            }
            if (Token() != "P6") throw new InvalidDataException(path + ": not a binary PPM (P6); convert it first");
            width = int.Parse(Token());
            height = int.Parse(Token());
            if (Token() != "255") throw new InvalidDataException(path + ": 8-bit PPM expected");
            pos++;  // the single white-space byte before the pixels
            var rgb = new byte[width * height * 3];
            Array.Copy(data, pos, rgb, 0, rgb.Length);
            return rgb;
        }

        public static int Main(string[] args)
        {
            if (args.Length < 2)
            {
                Console.Error.WriteLine("usage: Detect MODEL(.onnx|.engine|bundle) IMAGE.ppm");
                return 2;
            }
            Console.WriteLine("defectrt " + Marshal.PtrToStringUTF8(Native.drt_version()));
            try
            {
                using (var det = new Detector(args[0]))
                {
                    byte[] rgb = ReadPpm(args[1], out int w, out int h);
                    DrtDetection[] dets = det.Detect(rgb, w, h, 0, DrtPixelFormat.Rgb);
                    Console.WriteLine(dets.Length + " detection(s)");
                    foreach (var d in dets)
                        Console.WriteLine($"{det.ClassName(d.ClassId),-12} {d.Score:F3}  x1={d.X1:F1} y1={d.Y1:F1} x2={d.X2:F1} y2={d.Y2:F1}");
                }
            }
            catch (DefectrtException e)
            {
                Console.Error.WriteLine(e.Message);
                return 1;
            }
            catch (DllNotFoundException e)
            {
                Console.Error.WriteLine("defectrt.dll / libdefectrt.so not found (put it next to the program or on PATH): " + e.Message);
                return 1;
            }
            return 0;
        }
    }
}
