import { predictionProblem } from '../../activities/serving';

describe('predictionProblem', () => {
  it.each([
    [0, undefined],
    [1, undefined],
    [2, 'expected 0 or 1'],
    ['1', 'expected 0 or 1'],
    [{ prediction: 1, probability: 0.9 }, 'expected 0 or 1'],
  ])('label %j', (prediction, problem) => {
    expect(predictionProblem(prediction, 'label')).toBe(problem);
  });

  it.each([
    [{ prediction: 0, probability: 0.07 }, undefined],
    [{ prediction: 1, probability: 0.93 }, undefined],
    [{ prediction: 1, probability: 0.4 }, 'expected prediction 1 exactly when probability is above 0.5'],
    [{ prediction: 0, probability: 1.2 }, 'expected probability between 0 and 1'],
    [{ prediction: 0 }, 'expected probability between 0 and 1'],
    [0, 'expected an object with prediction and probability'],
    [null, 'expected an object with prediction and probability'],
  ])('label and probability %j', (prediction, problem) => {
    expect(predictionProblem(prediction, 'label_and_probability')).toBe(problem);
  });
});
