/*
 * nn_xp.backends._native: the optimizer updates for NumPy's flat buffers, and a ReLU layer's bias and
 * activation passes, each in one pass.
 *
 * The NumPy fast path (optim.py) updates the flat parameter buffer with a dozen whole-array
 * operations, each a pass over memory; for workload (a)'s 535,818 parameters those passes, not
 * the arithmetic, cost as much as a third of a training step. Likewise a ReLU layer's forward
 * (bias, then maximum) and backward (mask, then the bias gradient's column sums) are two passes
 * each in NumPy (model.py). These loops do the same arithmetic
 * in the same order, element by element, so their results are bitwise those of the NumPy path:
 * every constant arrives already computed (in double, as Python computes it) and is rounded once
 * to the buffer's type, as NumPy rounds a Python float next to a float32 array; and the build
 * turns off floating-point contraction (no fused multiply-add), errno-setting sqrt and
 * floating-point traps only.
 * tests/test_numpy_ops.py checks the bitwise agreement. numpy_ops.py is the Python side.
 *
 * Buffers come through the buffer protocol (any C-contiguous float32 or float64 buffer, NumPy
 * arrays included), so building this needs no NumPy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

/* On x86-64 Linux, an AVX2 copy of each loop beside the baseline one, picked at load time. */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__)
#define NN_XP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define NN_XP_CLONES
#endif

/* SQRT is sqrtf for float and sqrt for double: both correctly rounded, as NumPy's sqrt. */
#define NN_XP_ADAM(T, SQRT, NAME)                                                                    \
    NN_XP_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v,   \
                                  Py_ssize_t n, T b1, T b2, T one_minus_b1, T one_minus_b2, T eps_c, \
                                  T step_c)                                                          \
    {                                                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                         \
            const T gi = g[i];                                                                       \
            const T mi = m[i] * b1 + gi * one_minus_b1;                                              \
            const T vi = v[i] * b2 + (gi * gi) * one_minus_b2;                                       \
            m[i] = mi;                                                                               \
            v[i] = vi;                                                                               \
            p[i] = p[i] - (mi / (SQRT(vi) + eps_c)) * step_c;                                        \
        }                                                                                            \
    }
NN_XP_ADAM(float, sqrtf, adam_f32)
NN_XP_ADAM(double, sqrt, adam_f64)

/* b + 0 (not b) where the NumPy path adds 0: it turns -0.0 into +0.0, as NumPy does. */
#define NN_XP_SGD_MOMENTUM(T, NAME)                                                                  \
    NN_XP_CLONES static void NAME(T *restrict p, const T *restrict g, T *restrict b, Py_ssize_t n,    \
                                  T lr, T momentum, T one_minus_dampening, int first, int nesterov)  \
    {                                                                                                \
        for (Py_ssize_t i = 0; i < n; i++) {                                                         \
            const T gi = g[i];                                                                       \
            const T bi = first ? b[i] + gi : b[i] * momentum + gi * one_minus_dampening;             \
            const T step = nesterov ? bi * momentum + gi : bi + (T)0;                                \
            b[i] = bi;                                                                               \
            p[i] = p[i] - step * lr;                                                                 \
        }                                                                                            \
    }
NN_XP_SGD_MOMENTUM(float, sgd_momentum_f32)
NN_XP_SGD_MOMENTUM(double, sgd_momentum_f64)

/* Z = maximum(Z + b, 0) row by row, as NumPy's `Z += b; maximum(Z, 0, out=Z)`: a NaN stays NaN
 * and -0.0 becomes +0.0, as NumPy's maximum gives. */
#define NN_XP_BIAS_RELU(T, NAME)                                                                     \
    NN_XP_CLONES static void NAME(T *restrict Z, const T *restrict b, Py_ssize_t rows, Py_ssize_t cols) \
    {                                                                                                \
        for (Py_ssize_t i = 0; i < rows; i++) {                                                      \
            T *restrict z = Z + i * cols;                                                            \
            for (Py_ssize_t j = 0; j < cols; j++) {                                                  \
                const T zj = z[j] + b[j];                                                            \
                z[j] = (zj > (T)0 || zj != zj) ? zj : (T)0;                                          \
            }                                                                                        \
        }                                                                                            \
    }
NN_XP_BIAS_RELU(float, bias_relu_f32)
NN_XP_BIAS_RELU(double, bias_relu_f64)

/* dA = dA * (A > 0) and db = the column sums of the new dA, added row after row: NumPy's
 * `dA *= A > 0; sum(dA, axis=0, out=db)` (a sum over the rows of a C-ordered array adds them in
 * order, so the order of additions is NumPy's too). */
#define NN_XP_RELU_BACKWARD_BIAS_GRAD(T, NAME)                                                       \
    NN_XP_CLONES static void NAME(T *restrict dA, const T *restrict A, T *restrict db, Py_ssize_t rows, \
                                  Py_ssize_t cols)                                                   \
    {                                                                                                \
        for (Py_ssize_t j = 0; j < cols; j++) {                                                      \
            db[j] = (T)0;                                                                            \
        }                                                                                            \
        for (Py_ssize_t i = 0; i < rows; i++) {                                                      \
            T *restrict d = dA + i * cols;                                                           \
            const T *restrict a = A + i * cols;                                                      \
            for (Py_ssize_t j = 0; j < cols; j++) {                                                  \
                const T mask = a[j] > (T)0 ? (T)1 : (T)0;                                            \
                const T dj = d[j] * mask;                                                            \
                d[j] = dj;                                                                           \
                db[j] += dj;                                                                         \
            }                                                                                        \
        }                                                                                            \
    }
NN_XP_RELU_BACKWARD_BIAS_GRAD(float, relu_backward_bias_grad_f32)
NN_XP_RELU_BACKWARD_BIAS_GRAD(double, relu_backward_bias_grad_f64)

/* The format of an acquired buffer, 'f' (float32) or 'd' (float64); 0 with a TypeError naming
 * the argument for anything else. */
static char
float_format(const Py_buffer *view, const char *name)
{
    const char *f = view->format == NULL ? "B" : view->format;
    const char *type = (f[0] == '<' || f[0] == '=' || f[0] == '@') ? f + 1 : f;
    char c = type[0];
    if ((c != 'f' && c != 'd') || type[1] != 0 || view->itemsize != (c == 'f' ? 4 : 8)) {
        PyErr_Format(PyExc_TypeError, "%s must be a float32 or float64 buffer, got format '%s'", name, f);
        return 0;
    }
    return c;
}

static void
release_buffers(Py_buffer *views, int count)
{
    for (int i = 0; i < count; i++) {
        PyBuffer_Release(&views[i]);
    }
}

/* Views of `count` buffers: C-contiguous, one format ('f' or 'd'), one length; the first
 * `writable` of them writable. Returns the format character, or 0 with an exception set. */
static char
get_buffers(PyObject **objects, const char **names, Py_buffer *views, int count, int writable)
{
    char format = 0;
    for (int got = 0; got < count; got++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (got < writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[got], &views[got], flags) < 0) {
            release_buffers(views, got);
            return 0;
        }
        char c = float_format(&views[got], names[got]);
        if (c == 0) {
            release_buffers(views, got + 1);
            return 0;
        }
        if (got == 0) {
            format = c;
        }
        else if (c != format || views[got].len != views[0].len) {
            PyErr_Format(PyExc_ValueError, "%s must have the dtype and length of %s", names[got], names[0]);
            release_buffers(views, got + 1);
            return 0;
        }
    }
    return format;
}

PyDoc_STRVAR(adam_doc,
"adam(p, g, m, v, beta1, beta2, one_minus_beta1, one_minus_beta2, eps_c, step_c)\n--\n\n"
"One Adam step over flat buffers, in place:\n"
"    m = m * beta1 + g * one_minus_beta1\n"
"    v = v * beta2 + (g * g) * one_minus_beta2\n"
"    p = p - (m / (sqrt(v) + eps_c)) * step_c\n"
"p, m and v are written; all four share one dtype (float32 or float64) and length.");

static PyObject *
nn_xp_adam(PyObject *self, PyObject *args)
{
    PyObject *objects[4];
    double b1, b2, omb1, omb2, eps_c, step_c;
    if (!PyArg_ParseTuple(args, "OOOOdddddd:adam", &objects[0], &objects[1], &objects[2], &objects[3],
                          &b1, &b2, &omb1, &omb2, &eps_c, &step_c)) {
        return NULL;
    }
    /* p, m, v are written, g is read: reorder so the writable ones come first. */
    PyObject *ordered[4] = {objects[0], objects[2], objects[3], objects[1]};
    const char *names[4] = {"p", "m", "v", "g"};
    Py_buffer views[4];
    char format = get_buffers(ordered, names, views, 4, 3);
    if (format == 0) {
        return NULL;
    }
    Py_ssize_t n = views[0].len / views[0].itemsize;
    Py_BEGIN_ALLOW_THREADS
    if (format == 'f') {
        adam_f32(views[0].buf, views[3].buf, views[1].buf, views[2].buf, n, (float)b1, (float)b2, (float)omb1,
                 (float)omb2, (float)eps_c, (float)step_c);
    }
    else {
        adam_f64(views[0].buf, views[3].buf, views[1].buf, views[2].buf, n, b1, b2, omb1, omb2, eps_c, step_c);
    }
    Py_END_ALLOW_THREADS
    release_buffers(views, 4);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(sgd_momentum_doc,
"sgd_momentum(p, g, b, lr, momentum, one_minus_dampening, first, nesterov)\n--\n\n"
"One step of SGD with momentum over flat buffers, in place:\n"
"    b = b + g if first else b * momentum + g * one_minus_dampening\n"
"    p = p - (b * momentum + g if nesterov else b + 0) * lr\n"
"p and b are written; all three share one dtype (float32 or float64) and length.");

static PyObject *
nn_xp_sgd_momentum(PyObject *self, PyObject *args)
{
    PyObject *objects[3];
    double lr, momentum, omd;
    int first, nesterov;
    if (!PyArg_ParseTuple(args, "OOOdddpp:sgd_momentum", &objects[0], &objects[1], &objects[2], &lr, &momentum,
                          &omd, &first, &nesterov)) {
        return NULL;
    }
    PyObject *ordered[3] = {objects[0], objects[2], objects[1]};
    const char *names[3] = {"p", "b", "g"};
    Py_buffer views[3];
    char format = get_buffers(ordered, names, views, 3, 2);
    if (format == 0) {
        return NULL;
    }
    Py_ssize_t n = views[0].len / views[0].itemsize;
    Py_BEGIN_ALLOW_THREADS
    if (format == 'f') {
        sgd_momentum_f32(views[0].buf, views[2].buf, views[1].buf, n, (float)lr, (float)momentum, (float)omd, first,
                         nesterov);
    }
    else {
        sgd_momentum_f64(views[0].buf, views[2].buf, views[1].buf, n, lr, momentum, omd, first, nesterov);
    }
    Py_END_ALLOW_THREADS
    release_buffers(views, 3);
    Py_RETURN_NONE;
}

/* A C-contiguous 2-D float buffer `matrix` (rows, cols) and a 1-D `vector` of length cols, of one
 * dtype; `matrix_writable` / `vector_writable` say which are written. Returns the format
 * character, or 0 with an exception set (and nothing held). */
static char
get_matrix_and_vector(PyObject *matrix, const char *matrix_name, int matrix_writable, PyObject *vector,
                      const char *vector_name, int vector_writable, Py_buffer *views)
{
    PyObject *objects[2] = {matrix, vector};
    const char *names[2] = {matrix_name, vector_name};
    int writable[2] = {matrix_writable, vector_writable};
    char formats[2];
    for (int k = 0; k < 2; k++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable[k] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objects[k], &views[k], flags) < 0) {
            if (k == 1) {
                PyBuffer_Release(&views[0]);
            }
            return 0;
        }
        formats[k] = float_format(&views[k], names[k]);
        if (formats[k] == 0) {
            release_buffers(views, k + 1);
            return 0;
        }
    }
    if (views[0].ndim != 2 || views[1].ndim != 1 || views[1].shape[0] != views[0].shape[1] || formats[0] != formats[1]) {
        PyErr_Format(PyExc_ValueError, "%s must be 2-D and %s 1-D with one element per column of %s, of one dtype",
                     matrix_name, vector_name, matrix_name);
        release_buffers(views, 2);
        return 0;
    }
    return formats[0];
}

PyDoc_STRVAR(bias_relu_doc,
"bias_relu(Z, b)\n--\n\n"
"A hidden layer's bias and ReLU, in place and in one pass: Z = maximum(Z + b, 0).\n"
"Z is (n_samples, n_units), b (n_units,), one dtype (float32 or float64).");

static PyObject *
nn_xp_bias_relu(PyObject *self, PyObject *args)
{
    PyObject *Z, *b;
    if (!PyArg_ParseTuple(args, "OO:bias_relu", &Z, &b)) {
        return NULL;
    }
    Py_buffer views[2];
    char format = get_matrix_and_vector(Z, "Z", 1, b, "b", 0, views);
    if (format == 0) {
        return NULL;
    }
    Py_ssize_t rows = views[0].shape[0], cols = views[0].shape[1];
    Py_BEGIN_ALLOW_THREADS
    if (format == 'f') {
        bias_relu_f32(views[0].buf, views[1].buf, rows, cols);
    }
    else {
        bias_relu_f64(views[0].buf, views[1].buf, rows, cols);
    }
    Py_END_ALLOW_THREADS
    release_buffers(views, 2);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(relu_backward_bias_grad_doc,
"relu_backward_bias_grad(dA, A, db)\n--\n\n"
"A ReLU layer's backward and its bias gradient, in one pass: dA = dA * (A > 0), then\n"
"db = dA summed over the rows. dA and A are (n_samples, n_units), db (n_units,); dA and db are\n"
"written; one dtype (float32 or float64).");

static PyObject *
nn_xp_relu_backward_bias_grad(PyObject *self, PyObject *args)
{
    PyObject *dA, *A, *db;
    if (!PyArg_ParseTuple(args, "OOO:relu_backward_bias_grad", &dA, &A, &db)) {
        return NULL;
    }
    Py_buffer views[3]; /* dA, db, A */
    char format = get_matrix_and_vector(dA, "dA", 1, db, "db", 1, views);
    if (format == 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(A, &views[2], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        release_buffers(views, 2);
        return NULL;
    }
    char a_format = float_format(&views[2], "A");
    if (a_format == 0) {
        release_buffers(views, 3);
        return NULL;
    }
    if (a_format != format || views[2].ndim != 2 || views[2].shape[0] != views[0].shape[0] ||
        views[2].shape[1] != views[0].shape[1]) {
        PyErr_SetString(PyExc_ValueError, "A must have the shape and dtype of dA");
        release_buffers(views, 3);
        return NULL;
    }
    Py_ssize_t rows = views[0].shape[0], cols = views[0].shape[1];
    Py_BEGIN_ALLOW_THREADS
    if (format == 'f') {
        relu_backward_bias_grad_f32(views[0].buf, views[2].buf, views[1].buf, rows, cols);
    }
    else {
        relu_backward_bias_grad_f64(views[0].buf, views[2].buf, views[1].buf, rows, cols);
    }
    Py_END_ALLOW_THREADS
    release_buffers(views, 3);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"adam", nn_xp_adam, METH_VARARGS, adam_doc},
    {"sgd_momentum", nn_xp_sgd_momentum, METH_VARARGS, sgd_momentum_doc},
    {"bias_relu", nn_xp_bias_relu, METH_VARARGS, bias_relu_doc},
    {"relu_backward_bias_grad", nn_xp_relu_backward_bias_grad, METH_VARARGS, relu_backward_bias_grad_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "nn_xp.backends._native", "Single-pass optimizer updates and ReLU layer passes for float buffers.", -1, methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    return PyModule_Create(&module);
}
